// Unit tests of the Jinja-subset interpreter: each feature, whitespace control, errors and limits.
// Expected strings were checked against Python jinja2 3.1 with HF's settings.
#include "backend/llm/chat_template/chat_template.h"

#include <gtest/gtest.h>

namespace ferry::llm {
namespace {

std::string render(const std::string& src, ValueDict vars = {}) {
  Result<ChatTemplate> t = ChatTemplate::parse(src);
  if (!t.ok()) return "PARSE ERROR: " + t.status().message();
  ChatTemplateInputs in;
  in.extra = std::move(vars);
  Result<std::string> r = t->render(in);
  return r.ok() ? r.value() : "RENDER ERROR: " + r.status().message();
}

Value json(const char* text) {
  Result<Value> v = value_from_json(text);
  EXPECT_TRUE(v.ok()) << v.status().to_string();
  return v.ok() ? v.value() : Value();
}

TEST(ChatTemplate, OutputsAndLiterals) {
  EXPECT_EQ(render("a{{ 1 + 2 }}b"), "a3b");
  EXPECT_EQ(render("{{ 'x' ~ 1 ~ none ~ true }}"), "x1NoneTrue");
  EXPECT_EQ(render("{{ [1, 'a', none] }} {{ {'k': 1.5} }}"), "[1, 'a', None] {'k': 1.5}");
  EXPECT_EQ(render("{{ 1 / 2 }} {{ 4 / 2 }} {{ 7 // 2 }} {{ -7 % 3 }} {{ 2 ** 3 }} {{ 1e20 }}"),
            "0.5 2.0 3 2 8 1e+20");
  EXPECT_EQ(render("{{ 'a' 'b' }}{{ \"it's\" }}"), "abit's");
  EXPECT_EQ(render("{{ undefined_name }}|"), "|");
}

TEST(ChatTemplate, IfElifElse) {
  const char* t = "{% if x > 2 %}big{% elif x == 2 %}two{% else %}small{% endif %}";
  EXPECT_EQ(render(t, ValueDict{{{"x", Value(3)}}}), "big");
  EXPECT_EQ(render(t, ValueDict{{{"x", Value(2)}}}), "two");
  EXPECT_EQ(render(t, ValueDict{{{"x", Value(1)}}}), "small");
  EXPECT_EQ(render("{% if not y is defined %}undef{% endif %}"), "undef");
  EXPECT_EQ(render("{{ 'a' if false }}|{{ 'a' if false else 'b' }}"), "|b");
}

TEST(ChatTemplate, ForLoopVariables) {
  EXPECT_EQ(render("{% for x in ['a','b','c'] %}{{ loop.index0 }}{{ loop.index }}{{ x }}{{ loop.length }}"
                   "{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %},{% endfor %}"),
            "01a3F,12b3,23c3L,");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"), "a=1;b=2;");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}"), "2242");
  EXPECT_EQ(render("{% for x in [1,2,3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}"), "13");
  EXPECT_EQ(render("{% for x in [1,2,3] %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}"), "1");
  EXPECT_EQ(render("{% for c in 'hé' %}[{{ c }}]{% endfor %}"), "[h][é]");
}

TEST(ChatTemplate, SetScopingAndNamespace) {
  // A set inside a loop does not leak; a namespace attribute does.
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(render("{% set ns = namespace(x=1) %}{% for i in [1,2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}"),
            "4");
  EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(render("{% set block %}in{{ 1 }}{% endset %}[{{ block }}]"), "[in1]");
  EXPECT_NE(render("{% set d = {} %}{% set d.x = 1 %}").find("not a namespace"), std::string::npos);
}

TEST(ChatTemplate, Macros) {
  EXPECT_EQ(render("{% macro greet(name, punct='!') %}hi {{ name }}{{ punct }}{% endmacro %}"
                   "{{ greet('a') }} {{ greet('b', punct='?') }}"),
            "hi a! hi b?");
  // Macros see template-level variables defined before the call.
  EXPECT_EQ(render("{% macro f() %}{{ y }}{% endmacro %}{% set y = 3 %}{{ f() }}"), "3");
}

TEST(ChatTemplate, WhitespaceControlTrimAndLstripBlocks) {
  // trim_blocks eats the newline after a block tag; lstrip_blocks the indentation before one.
  EXPECT_EQ(render("{% if true %}\n  a\n  {% endif %}\nb"), "  a\nb");
  EXPECT_EQ(render("x  {{- ' y ' -}}  z"), "x y z");
  EXPECT_EQ(render("a\n  {%- if true -%}\n  b  {%- endif %}"), "ab");
  EXPECT_EQ(render("{# comment #}\n{{ 1 }}"), "1");
  EXPECT_EQ(render("{{ 1 }}\n{{ 2 }}"), "1\n2");  // expressions keep their newline
  EXPECT_EQ(render("  {%+ if true %}x{% endif %}"), "  x");
  EXPECT_EQ(render("{% raw %}{{ not parsed }}{% endraw %}"), "{{ not parsed }}");
}

TEST(ChatTemplate, AccessAndSlicing) {
  ValueDict vars{{{"m", json(R"([{"role": "user", "content": "hi"}, {"role": "bot"}])")}}};
  EXPECT_EQ(render("{{ m[0].role }}{{ m[0]['content'] }}{{ m[-1].role }}|{{ m[1].content is defined }}", vars),
            "userhibot|False");
  EXPECT_EQ(render("{{ [1,2,3][::-1] }}{{ [1,2,3][1:] }}{{ 'hello'[1:3] }}{{ 'abc'[-1] }}"), "[3, 2, 1][2, 3]elc");
  EXPECT_EQ(render("{{ m | length }} {{ m[5] is defined }}", vars), "2 False");
}

TEST(ChatTemplate, FiltersAndMethods) {
  EXPECT_EQ(render("{{ '  a b  ' | trim }}|{{ 'Ab' | upper }}{{ 'Ab' | lower }}|{{ [1,2] | join(', ') }}"),
            "a b|ABab|1, 2");
  EXPECT_EQ(render("{{ x | default('d') }}{{ '' | default('e', true) }}{{ [3,4] | first }}{{ [3,4] | last }}"), "de34");
  EXPECT_EQ(render("{{ 'aXbX' | replace('X', '-') }}{{ 5 | string }}{{ {'b': 1, 'a': [1, 2.5, none, true]} | tojson }}"),
            "a-b-5{\"b\": 1, \"a\": [1, 2.5, null, true]}");
  EXPECT_EQ(render("{{ {'a': 'é\"\\n'} | tojson(indent=2) }}"), "{\n  \"a\": \"é\\\"\\n\"\n}");
  EXPECT_EQ(render("{{ ' x '.strip() }}{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('x') }}{{ 'a,b'.split(',') }}"),
            "xTrueFalse['a', 'b']");
  EXPECT_EQ(render("{{ {'a': 1}.get('a') }}{{ {'a': 1}.get('z', 'no') }}{{ {'a': 1}.keys() | list }}"), "1no['a']");
  EXPECT_EQ(render("{{ [{'t': 'x'}, {'t': 'y'}] | selectattr('t', 'equalto', 'y') | list | length }}"
                   "{{ [{'t': 'x'}, {'t': 'y'}] | map(attribute='t') | join }}"),
            "1xy");
  EXPECT_EQ(render("{{ 'a\nb' | indent(2) }}|{{ 'x' | safe }}"), "a\n  b|x");
}

TEST(ChatTemplate, Tests) {
  EXPECT_EQ(render("{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ {} is mapping }}{{ x is undefined }}"),
            "TrueTrueTrueTrueTrue");
  EXPECT_EQ(render("{{ 3 is divisibleby 3 }}{{ 'a' in 'cat' }}{{ 2 not in [1] }}{{ 'k' in {'k': 1} }}"),
            "TrueTrueTrueTrue");
}

TEST(ChatTemplate, RaiseExceptionBecomesStatus) {
  Result<ChatTemplate> t = ChatTemplate::parse("{% if messages | length == 0 %}{{ raise_exception('no messages') }}{% endif %}");
  ASSERT_TRUE(t.ok());
  ChatTemplateInputs in;
  in.messages = Value(ValueList{});
  Result<std::string> r = t->render(in);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("raise_exception: no messages"), std::string::npos);
}

TEST(ChatTemplate, SyntaxErrorsNameLineAndColumn) {
  Result<ChatTemplate> t = ChatTemplate::parse("ok\n{% if x %}unclosed");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("endif"), std::string::npos) << t.status().message();
  t = ChatTemplate::parse("a\nb {{ 1 + }}");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("line 2"), std::string::npos) << t.status().message();
  EXPECT_FALSE(ChatTemplate::parse("{{ 'unterminated }}").ok());
  EXPECT_FALSE(ChatTemplate::parse("{% frobnicate %}").ok());
  EXPECT_FALSE(ChatTemplate::parse("{{ x").ok());
}

TEST(ChatTemplate, RenderErrorsAreStatuses) {
  EXPECT_NE(render("{{ 1 / 0 }}").find("division by zero"), std::string::npos);
  EXPECT_NE(render("{{ x.y }}").find("undefined"), std::string::npos);
  EXPECT_NE(render("{{ 'a' + 1 }}").find("unsupported operand"), std::string::npos);
  EXPECT_NE(render("{{ nope() }}").find("not callable"), std::string::npos);
  EXPECT_NE(render("{{ 1 | no_such_filter }}").find("unknown filter"), std::string::npos);
}

TEST(ChatTemplate, HostileTemplatesHitLimitsNotCrashes) {
  // Deep nesting is refused by the parser instead of overflowing the stack.
  std::string deep(5000, '(');
  EXPECT_FALSE(ChatTemplate::parse("{{ " + deep + "1" + std::string(5000, ')') + " }}").ok());
  std::string nested_ifs;
  for (int i = 0; i < 1000; ++i) nested_ifs += "{% if true %}";
  EXPECT_FALSE(ChatTemplate::parse(nested_ifs).ok());
  // Unbounded recursion, output and loops.
  EXPECT_NE(render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").find("nested too deeply"), std::string::npos);
  EXPECT_NE(render("{{ 'x' * 100000000 }}").find("limit"), std::string::npos);
  EXPECT_NE(render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}").find("limit"),
            std::string::npos);
  // Garbage in, Status out.
  const char* junk[] = {"{{", "{%", "{#", "{{ }}", "{% %}", "{% for %}", "{% set %}", "{{ [ }}", "{{ a.1.b[ }}",
                        "{% endif %}", "{% macro %}", "{{ 1 is }}", "{{ x | }}", "}}{{{{%%}}"};
  for (const char* j : junk) {
    Result<ChatTemplate> t = ChatTemplate::parse(j);
    if (t.ok()) (void)t->render({});
  }
}

TEST(ChatTemplate, ContentPartsAreFlattenedForStringTemplates) {
  Result<ChatTemplate> t = ChatTemplate::parse("{% for m in messages %}{{ m.content | trim }};{% endfor %}");
  ASSERT_TRUE(t.ok());
  ChatTemplateInputs in;
  in.messages = json(R"([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"},
                                                      {"type": "text", "text": "b"}]}])");
  Result<std::string> r = t->render(in);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value(), "a\nb;");
}

TEST(ChatTemplate, StrftimeNowUsesTheGivenClock) {
  Result<ChatTemplate> t = ChatTemplate::parse("{{ strftime_now('%Y') }}");
  ASSERT_TRUE(t.ok());
  ChatTemplateInputs in;
  in.now = 86400 * 365 * 30;  // early 2000 (UTC)
  EXPECT_EQ(t->render(in).value().substr(0, 3), "199");
}

TEST(TokenizerChatConfig, ReadsTemplateAndSpecialTokens) {
  Result<TokenizerChatConfig> c = parse_tokenizer_chat_config(
      R"({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null,
          "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->chat_template, "D");
  EXPECT_EQ(c->bos_token, "<s>");
  EXPECT_EQ(c->eos_token, "</s>");
  EXPECT_EQ(c->special_tokens.find("pad_token"), nullptr);
  EXPECT_FALSE(parse_tokenizer_chat_config("{").ok());
}

}  // namespace
}  // namespace ferry::llm
