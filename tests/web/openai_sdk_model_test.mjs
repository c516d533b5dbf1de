// The official OpenAI Node SDK (npm "openai") against a running ferry-server serving a real model
// with a chat template (tests/integration/schema_suite_test.cc starts one with tiny-llama). The
// model's text is noise; constrained decoding must still make every structured answer valid, and
// ajv (an independent JSON Schema validator) checks it. Checks:
//   - chat.completions.parse with a json_schema response_format: `parsed` validates; the same
//     through the stream helper (chat.completions.stream(...).finalChatCompletion());
//   - tool call round trips (request with tools -> tool_calls -> tool message -> final answer),
//     with a named function and with tool_choice "required", streamed (the SDK's stream helper
//     assembles the tool_calls deltas) and not: the arguments parse and validate against the
//     function's parameters;
//   - the Responses API's text, streamed and not (greedy: the same text), and responses.parse
//     with a json_schema text format.
// Prints one line per check; exits 1 on the first failure.
//
//   node openai_sdk_model_test.mjs --url http://127.0.0.1:PORT --model NAME [--seeds 2]
import OpenAI from "openai";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import assert from "node:assert/strict";
import { VERSION } from "openai/version";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const client = new OpenAI({ baseURL: `${args.url}/v1`, apiKey: "unused", maxRetries: 0 });
const model = args.model;
const seeds = Number(args.seeds ?? 2);
console.log(`openai ${VERSION}, node ${process.version}`);
const sdkMajor = Number(VERSION.split(".")[0]);

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
function check(label, schema, value) {
  const validate = ajv.compile(schema);
  assert.ok(validate(value), `${label}: ${JSON.stringify(value)} is invalid: ${JSON.stringify(validate.errors)}`);
}

// Sampling settings: greedy once, then temperature 1 with each seed.
const samplings = [{ temperature: 0 }, ...Array.from({ length: seeds }, (_, i) => ({ temperature: 1, seed: i + 1 }))];
const tag = (s) => (s.seed === undefined ? "t=0" : `t=1 seed=${s.seed}`);

// --- Structured output through chat.completions.parse.
const eventSchema = {
  type: "object",
  properties: {
    title: { type: "string", maxLength: 16 },
    date: { type: "string", format: "date" },
    priority: { enum: ["low", "medium", "high"] },
    attendees: { type: "array", items: { type: "string", maxLength: 6 }, maxItems: 3 },
    room: { anyOf: [{ type: "integer", minimum: 1, maximum: 20 }, { type: "null" }] },
  },
  required: ["title", "date", "priority", "attendees", "room"],
  additionalProperties: false,
};
const responseFormat = { type: "json_schema", json_schema: { name: "event", schema: eventSchema, strict: true } };
const ask = [{ role: "system", content: "Extract the event." }, { role: "user", content: "Lunch with Ann on Friday." }];
for (const s of samplings) {
  const r = await client.chat.completions.parse({ model, messages: ask, response_format: responseFormat, max_tokens: 300, ...s });
  const message = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, "stop");
  assert.ok(message.parsed !== null && typeof message.parsed === "object", `parse ${tag(s)}: parsed is ${message.parsed}`);
  check(`parse ${tag(s)}`, eventSchema, message.parsed);
  console.log(`chat.completions.parse ${tag(s)}: ${JSON.stringify(message.parsed)}`);

  const final = await client.chat.completions.stream({ model, messages: ask, response_format: responseFormat, max_tokens: 300, ...s })
    .finalChatCompletion();
  // The stream helper of openai < 7 parses only the SDK's own (zod) formats, not a plain json_schema.
  const streamedParsed = sdkMajor >= 7 ? final.choices[0].message.parsed : JSON.parse(final.choices[0].message.content);
  check(`stream ${tag(s)}`, eventSchema, streamedParsed);
  assert.equal(final.choices[0].message.content, message.content, "streamed and not: same sampling, same text");
  console.log(`chat.completions.stream ${tag(s)}: same text, valid`);
}

// --- Tool calls.
const weather = {
  name: "get_weather",
  description: "The weather in a city",
  strict: true,
  parameters: {
    type: "object",
    properties: { city: { type: "string", maxLength: 12 }, unit: { enum: ["C", "F"] }, days: { type: "integer", minimum: 1, maximum: 7 } },
    required: ["city", "unit", "days"],
    additionalProperties: false,
  },
};
const time = {
  name: "get_time",
  description: "The time in a time zone",
  strict: true,
  parameters: {
    type: "object",
    properties: { zone: { type: "string", pattern: "^[A-Z][a-z]{1,8}/[A-Z][a-z]{1,8}$" } },
    required: ["zone"],
    additionalProperties: false,
  },
};
// Parameters with $defs and $refs, as pydantic and zod write them.
const route = {
  name: "route",
  description: "A route between two points",
  strict: true,
  parameters: {
    type: "object",
    properties: { from: { $ref: "#/$defs/point" }, to: { $ref: "#/$defs/point" } },
    required: ["from", "to"],
    additionalProperties: false,
    $defs: {
      point: {
        type: "object",
        properties: { x: { type: "integer", minimum: -9, maximum: 9 }, y: { type: "integer", minimum: -9, maximum: 9 } },
        required: ["x", "y"],
        additionalProperties: false,
      },
    },
  },
};
const tools = [{ type: "function", function: weather }, { type: "function", function: time }, { type: "function", function: route }];
const byName = { get_weather: weather, get_time: time, route };
const question = [{ role: "user", content: "What is the weather in Paris?" }];

// One round trip: `call` returns the assistant message with its tool_calls.
async function roundTrip(label, streamed, call) {
  const assistant = await call(question);
  assert.ok(assistant.tool_calls?.length >= 1, `${label}: tool_calls in ${JSON.stringify(assistant)}`);
  const results = [];
  for (const tc of assistant.tool_calls) {
    assert.equal(tc.type, "function");
    assert.ok(tc.id.length > 0, `${label}: a call id`);
    const fn = byName[tc.function.name];
    assert.ok(fn, `${label}: a known function, not ${tc.function.name}`);
    const parsedArgs = JSON.parse(tc.function.arguments);
    check(`${label} ${tc.function.name}`, fn.parameters, parsedArgs);
    assert.deepEqual(tc.function.parsed_arguments, parsedArgs, `${label}: the SDK parsed the strict function's arguments`);
    results.push({ role: "tool", tool_call_id: tc.id, content: "sunny, 21 C" });
  }
  const messages = [...question, assistant, ...results];
  // The final answer is free text that max_tokens may cut: the tools go without `strict`, for which
  // the SDK's parsing helpers would refuse a "length" finish (LengthFinishReasonError).
  const plainTools = tools.map((t) => ({ type: "function", function: { ...t.function, strict: false } }));
  const request = { model, messages, tools: plainTools, tool_choice: "none", max_tokens: 8, temperature: 0 };
  let answer;
  if (streamed) {
    answer = (await client.chat.completions.stream(request).finalChatCompletion()).choices[0];
  } else {
    answer = (await client.chat.completions.create(request)).choices[0];
  }
  assert.ok(["stop", "length"].includes(answer.finish_reason), `${label}: final answer finish ${answer.finish_reason}`);
  assert.equal(typeof answer.message.content, "string");
  assert.ok(!answer.message.tool_calls?.length, `${label}: the final answer is text`);
  const calls = assistant.tool_calls.map((tc) => `${tc.function.name}(${JSON.stringify(JSON.parse(tc.function.arguments))})`).join(", ");
  console.log(`${label}: ${calls} -> ${JSON.stringify(answer.message.content)}`);
  return assistant.tool_calls.map((tc) => [tc.function.name, JSON.parse(tc.function.arguments)]);
}

// "required" constrains the reply to a list of calls; a model of noise never closes an open-ended
// list, so parallel_tool_calls: false bounds it to one call (either function).
const choices = [
  ["named", { tool_choice: { type: "function", function: { name: "get_weather" } } }],
  ["named $defs", { tool_choice: { type: "function", function: { name: "route" } } }],
  ["required", { tool_choice: "required", parallel_tool_calls: false }],
];
for (const s of samplings) {
  for (const [choiceName, choice] of choices) {
    const request = (messages) => ({ model, messages, tools, ...choice, max_tokens: 300, ...s });
    const plain = await roundTrip(`tools ${choiceName} ${tag(s)}`, false, async (messages) => {
      const r = await client.chat.completions.parse(request(messages));
      assert.equal(r.choices[0].finish_reason, "tool_calls");
      return r.choices[0].message;
    });
    const streamed = await roundTrip(`tools ${choiceName} ${tag(s)}, streamed`, true, async (messages) => {
      const r = await client.chat.completions.stream(request(messages)).finalChatCompletion();
      assert.equal(r.choices[0].finish_reason, "tool_calls");
      return r.choices[0].message;
    });
    assert.deepEqual(streamed, plain, "streamed and not: same sampling, same calls");
  }
}

// --- The Responses API.
const response = await client.responses.create({ model, input: "Hello!", instructions: "Be brief.", max_output_tokens: 12, temperature: 0 });
assert.ok(["completed", "incomplete"].includes(response.status));
assert.equal(typeof response.output_text, "string");
assert.ok(response.output_text.length > 0, "some text");
assert.ok(response.usage.output_tokens > 0 && response.usage.output_tokens <= 12);
console.log(`responses: ${response.id} ${response.status} ${JSON.stringify(response.output_text)}`);

const stream = await client.responses.create({ model, input: "Hello!", instructions: "Be brief.", max_output_tokens: 12, temperature: 0, stream: true });
let deltas = "";
let last = null;
const types = [];
for await (const event of stream) {
  types.push(event.type);
  if (event.type === "response.output_text.delta") deltas += event.delta;
  if (event.type === "response.completed" || event.type === "response.incomplete") last = event.response;
}
assert.equal(types[0], "response.created");
assert.ok(last, "a response.completed or response.incomplete event");
assert.equal(deltas, response.output_text, "greedy: the streamed text equals the non-streamed one");
assert.equal(last.output[0].content[0].text, deltas);
console.log(`responses, streamed: ${types.length} events, the same text`);

const textFormat = { format: { type: "json_schema", name: "event", schema: eventSchema, strict: true } };
for (const s of samplings) {
  const parsed = await client.responses.parse({ model, input: "Lunch with Ann on Friday.", text: textFormat, max_output_tokens: 300, ...s });
  assert.equal(parsed.status, "completed");
  check(`responses.parse ${tag(s)}`, eventSchema, parsed.output_parsed);
  console.log(`responses.parse ${tag(s)}: ${JSON.stringify(parsed.output_parsed)}`);
}
console.log("all SDK checks passed");
