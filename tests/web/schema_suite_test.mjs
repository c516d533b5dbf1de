// The schema suite: every schema of schema_suite.json sent to real models through a running
// ferry-server, greedy (temperature 0) and sampled (temperature 1, one run per seed). Each output
// must end with finish_reason "stop" (a "length" finish is a failure: the suite's schemas bound
// every string and array, so a value is always reachable within max_tokens), parse as JSON and
// validate under ajv (an independent JSON Schema implementation, formats from ajv-formats).
// The requests rotate through the output format fields (response_format, guided_json,
// structured_outputs, json_schema); the completions model's sampled runs ask for n = 2 and one
// more goes through KServe generate; the chat model streams every other run.
// Then the refusals: unsupported keywords, invalid schemas and wrongly typed format fields are
// 400s whose message names the keyword or field.
//
//   node schema_suite_test.mjs --url http://127.0.0.1:PORT [--completions-model stories]
//        [--chat-model tiny-llama] [--completions-seeds 3] [--chat-seeds 2] [--only REGEX]
//        [--parallel 4]    (schemas in flight at once; each sends all its runs together)
//
// Prints a line per schema and a summary; exits 1 when any output or refusal check fails.
import Ajv from "ajv";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { readFileSync } from "node:fs";
import http from "node:http";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const url = args.url;
const suite = JSON.parse(readFileSync(new URL("./schema_suite.json", import.meta.url), "utf8"));
const only = args.only ? new RegExp(args.only) : null;
const schemas = suite.schemas.filter((s) => !only || only.test(s.name));

// One validator per schema (a schema's $id may only be added once to an Ajv instance).
function validator(entry) {
  const options = { strict: false, allErrors: true };
  const ajv = entry.draft === "07" ? new Ajv(options) : new Ajv2020(options);
  addFormats(ajv);
  return ajv.compile(entry.schema);
}

// The body fields that ask for `schema`, rotating through the names ferry accepts.
const formatFields = [
  (schema) => ({ response_format: { type: "json_schema", json_schema: { name: "suite", schema, strict: true } } }),
  (schema) => ({ guided_json: schema }),
  (schema) => ({ structured_outputs: { json: schema } }),
  (schema) => ({ json_schema: schema }),
];

// One request on its own connection (agent: false): no kept-alive socket that the server may close
// just as a request is written on it, so a failure here is the server's, not a race of the client.
function request(method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(url + path, { method, agent: false, headers: data ? { "content-type": "application/json" } : {} }, (res) => {
      const parts = [];
      res.on("data", (d) => parts.push(d));
      res.on("end", () => resolve({ status: res.statusCode, text: Buffer.concat(parts).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(data);
  });
}
const post = (path, body) => request("POST", path, body);

// The text and finish_reason of each choice, from a JSON answer or from server-sent events.
function readAnswer(kind, stream, text) {
  if (kind === "generate") {
    const j = JSON.parse(text);
    return [{ output: j.text_output, finish: j.finish_reason }];
  }
  if (!stream) {
    return JSON.parse(text).choices.map((c) => ({ output: kind === "chat" ? c.message.content : c.text, finish: c.finish_reason }));
  }
  const choices = [];
  let done = false;
  for (const event of text.split("\n\n")) {
    const data = event.startsWith("data: ") ? event.slice(6) : null;
    if (data === null) continue;
    if (data === "[DONE]") { done = true; continue; }
    const chunk = JSON.parse(data);
    if (chunk.error) throw new Error(`error event: ${data}`);
    for (const c of chunk.choices) {
      choices[c.index] ??= { output: "", finish: null };
      choices[c.index].output += (kind === "chat" ? c.delta.content : c.text) ?? "";
      if (c.finish_reason) choices[c.index].finish = c.finish_reason;
    }
  }
  if (!done) throw new Error("the stream did not end with [DONE]");
  return choices;
}

// The runs: {model, kind, temperature, seed, stream, n, field} for each schema. Sampled runs on the
// completions model ask for 2 choices (each has its own matcher; choice i samples with seed + i, so
// their seeds are 1, 3, 5, ...); one more run with the next seed goes through KServe's generate.
function runsFor(index) {
  const runs = [];
  const add = (model, kind, seeds, fieldShift, streamOdd) => {
    if (!model) return;
    for (let r = 0; r <= seeds; ++r) {
      const n = kind === "completions" && r > 0 ? 2 : 1;
      runs.push({ model, kind, temperature: r === 0 ? 0 : 1, seed: r === 0 ? undefined : n * (r - 1) + 1,
                  stream: streamOdd && r % 2 === 1, n, field: (index + fieldShift) % formatFields.length });
    }
  };
  add(args["completions-model"], "completions", Number(args["completions-seeds"] ?? 3), 0, false);
  if (args["completions-model"]) {
    const seed = 2 * Number(args["completions-seeds"] ?? 3) + 1;
    runs.push({ model: args["completions-model"], kind: "generate", temperature: 1, seed, stream: false, n: 1,
                field: (index + 2) % formatFields.length });
  }
  add(args["chat-model"], "chat", Number(args["chat-seeds"] ?? 2), 1, true);
  return runs;
}

// Each model's context window: a schema's max_tokens is capped to leave room for the prompt.
const contexts = Object.fromEntries(JSON.parse((await request("GET", "/v1/models")).text).data.map((m) => [m.id, m.max_model_len]));

// One run of `entry`: a problem per output that is not valid (none when all are).
async function runOne(entry, validate, run) {
  const body = {
    ...(run.kind === "generate" ? {} : { model: run.model }),
    max_tokens: Math.min(entry.max_tokens ?? 800, contexts[run.model] - 32),
    temperature: run.temperature,
    ...(run.seed === undefined ? {} : { seed: run.seed }),
    ...(run.stream ? { stream: true } : {}),
    ...(run.n > 1 ? { n: run.n } : {}),
    ...formatFields[run.field](entry.schema),
  };
  if (run.kind === "chat") body.messages = [{ role: "user", content: "Answer in JSON." }];
  else if (run.kind === "generate") body.text_input = "Once upon a time, the answer was";
  else body.prompt = "Once upon a time, the answer was";
  const label = `${run.model} t=${run.temperature}${run.seed === undefined ? "" : ` seed=${run.seed}`}` +
                `${run.stream ? " stream" : ""}${run.kind === "generate" ? " generate" : ""} ${Object.keys(formatFields[run.field]({}))[0]}`;
  const paths = { chat: "/v1/chat/completions", completions: "/v1/completions", generate: `/v2/models/${run.model}/generate` };
  const r = await post(paths[run.kind], body);
  const every = (why) => Array.from({ length: run.n }, () => `${label}: ${why}`);
  if (r.status !== 200) return every(`status ${r.status}: ${r.text}`);
  const choices = readAnswer(run.kind, run.stream, r.text);
  if (choices.length !== run.n) return every(`${choices.length} choices, not ${run.n}`);
  const problems = [];
  for (const [i, { output, finish }] of choices.entries()) {
    const at = run.n > 1 ? `${label} choice ${i}` : label;
    let value;
    if (finish !== "stop") {
      problems.push(`${at}: finish_reason ${finish}, output ${JSON.stringify(output)}`);
    } else if ((value = parseOrUndefined(output)) === undefined) {
      problems.push(`${at}: does not parse: ${JSON.stringify(output)}`);
    } else if (!validate(value)) {
      problems.push(`${at}: invalid ${JSON.stringify(validate.errors)}: ${output}`);
    }
  }
  return problems;
}

// JSON.parse, or undefined when the text is not one JSON value.
function parseOrUndefined(text) {
  try { return JSON.parse(text); } catch { return undefined; }
}

// Runs `tasks` (functions returning promises) with at most `limit` in flight: the server batches them.
async function pool(tasks, limit) {
  const results = new Array(tasks.length);
  let next = 0;
  const worker = async () => { while (next < tasks.length) { const i = next++; results[i] = await tasks[i](); } };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

const failures = [];
let outputs = 0;
const perSchema = await pool(schemas.map((entry, index) => async () => {
  const validate = validator(entry);
  const runs = runsFor(index);
  const problems = (await Promise.all(runs.map((run) =>
    runOne(entry, validate, run).catch((e) => Array.from({ length: run.n }, () => `${run.model}: ${e.message}`))))).flat();
  const count = runs.reduce((sum, run) => sum + run.n, 0);
  outputs += count;
  return { entry, runs: count, problems };
}), Number(args.parallel ?? 4));
for (const { entry, runs, problems } of perSchema) {
  console.log(`${problems.length === 0 ? "ok  " : "FAIL"} ${entry.name}: ${runs - problems.length}/${runs}`);
  for (const p of problems) { console.log(`     ${p}`); failures.push(`${entry.name}: ${p}`); }
}
console.log(`schemas: ${schemas.length}, outputs: ${outputs}, valid and finished with "stop": ${outputs - failures.length}`);

// Refusals. Each case is a body fragment and the words its 400 message must contain.
// A value for each unsupported keyword (what a schema would write there).
const unsupported = {
  not: {}, if: {}, multipleOf: 2, patternProperties: {}, uniqueItems: true, contains: {}, minContains: 1,
  minProperties: 1, dependentRequired: {}, dependentSchemas: {}, dependencies: {}, unevaluatedProperties: false,
  unevaluatedItems: false, $dynamicRef: "#meta", $recursiveRef: "#",
};
const refusals = [
  ...Object.entries(unsupported).map(([k, v]) => ({
    name: `unsupported keyword ${k}`,
    body: { guided_json: { type: "object", properties: { a: { type: "array", [k]: v } } } },
    words: [`'${k}'`, "/properties/a"],
  })),
  { name: "additionalItems (draft-07 tuples)", body: { guided_json: { type: "array", items: [{ type: "integer" }], additionalItems: false } },
    words: ["'additionalItems'"] },
  { name: "if/then/else", body: { guided_json: { if: { type: "string" }, then: { maxLength: 2 }, else: { type: "null" } } }, words: ["'if'"] },
  { name: "unknown type", body: { guided_json: { type: "strin" } }, words: ["strin"] },
  { name: "type not a string", body: { guided_json: { type: 5 } }, words: ["'type'"] },
  { name: "properties not an object", body: { guided_json: { type: "object", properties: [] } }, words: ["'properties'"] },
  { name: "required not strings", body: { guided_json: { type: "object", required: [1] } }, words: ["'required'"] },
  { name: "empty enum", body: { guided_json: { enum: [] } }, words: ["'enum'"] },
  { name: "negative minItems", body: { guided_json: { type: "array", minItems: -1 } }, words: ["'minItems'"] },
  { name: "maxItems below minItems", body: { guided_json: { type: "array", minItems: 3, maxItems: 2 } }, words: ["'maxItems'"] },
  { name: "maxLength below minLength", body: { guided_json: { type: "string", minLength: 3, maxLength: 2 } }, words: ["'maxLength'"] },
  { name: "integer bounds with no integer between", body: { guided_json: { type: "integer", minimum: 3, maximum: 2 } }, words: ["bounds"] },
  { name: "number bound that is not an integer", body: { guided_json: { type: "number", minimum: 1.5 } }, words: ["'minimum'"] },
  { name: "exclusiveMaximum on a number", body: { guided_json: { type: "number", exclusiveMaximum: 1 } }, words: ["'exclusiveMaximum'"] },
  { name: "required property that additionalProperties false forbids",
    body: { guided_json: { type: "object", properties: { a: { type: "null" } }, required: ["a", "b"], additionalProperties: false } },
    words: ["'b'", "additionalProperties"] },
  { name: "propertyNames other than maxLength", body: { guided_json: { type: "object", propertyNames: { pattern: "^a" } } },
    words: ["'propertyNames'", "'maxLength'"] },
  { name: "declared name longer than propertyNames allows",
    body: { guided_json: { type: "object", properties: { long: {} }, propertyNames: { maxLength: 2 } } }, words: ["'long'"] },
  { name: "maxProperties below the declared properties",
    body: { guided_json: { type: "object", properties: { a: {}, b: {} }, maxProperties: 1 } }, words: ["'maxProperties'"] },
  { name: "allOf with two schemas", body: { guided_json: { allOf: [{ type: "integer" }, { minimum: 0 }] } }, words: ["'allOf'"] },
  { name: "$ref to nothing", body: { guided_json: { $ref: "#/$defs/missing" } }, words: ["#/$defs/missing"] },
  { name: "remote $ref", body: { guided_json: { $ref: "https://example.com/schema.json" } }, words: ["https://example.com/schema.json"] },
  { name: "$ref not a string", body: { guided_json: { $ref: 1 } }, words: ["'$ref'"] },
  { name: "pattern with a backreference", body: { guided_json: { type: "string", pattern: "^(a)\\1$" } }, words: ["'pattern'"] },
  { name: "pattern with maxLength", body: { guided_json: { type: "string", pattern: "^a+$", maxLength: 3 } }, words: ["'pattern'", "'maxLength'"] },
  { name: "schema false", body: { guided_json: false }, words: ["false"] },
  { name: "schema text that is not JSON", body: { guided_json: "{\"type\": " }, words: ["guided_json"] },
  { name: "guided_json a number", body: { guided_json: 42 }, words: ["guided_json"] },
  { name: "response_format a string", body: { response_format: "json" }, words: ["response_format"] },
  { name: "response_format unknown type", body: { response_format: { type: "xml" } }, words: ["xml"] },
  { name: "response_format json_schema not an object", body: { response_format: { type: "json_schema", json_schema: 5 } }, words: ["json_schema"] },
  { name: "response_format with an unsupported keyword", body: { response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", properties: { n: { type: "integer", multipleOf: 3 } } } } } },
    words: ["'multipleOf'", "/properties/n"] },
  { name: "structured_outputs.json with an unsupported keyword", body: { structured_outputs: { json: { type: "array", contains: {} } } },
    words: ["'contains'"] },
  { name: "llama.cpp json_schema with an unknown type", body: { json_schema: { type: "strin" } }, words: ["strin"] },
  { name: "guided_json as text with an unsupported keyword", body: { guided_json: "{\"type\": \"object\", \"minProperties\": 1}" },
    words: ["'minProperties'"] },
  { name: "two formats at once", body: { guided_json: { type: "integer" }, guided_regex: "a+" }, words: ["guided_json", "guided_regex"] },
];
// Each refusal on every model given (completions and chat): a 400 whose message has the words and
// whose `param` names the format field (null when two fields conflict).
const refusalTargets = [[args["completions-model"], "completions"], [args["chat-model"], "chat"]].filter(([m]) => m);
let refused = 0;
for (const [model, kind] of refusalTargets) {
  for (const c of refusals) {
    if (only && !only.test(c.name)) continue;
    const body = { model, max_tokens: 8, ...c.body };
    if (kind === "chat") body.messages = [{ role: "user", content: "x" }];
    else body.prompt = "x";
    const r = await post(kind === "chat" ? "/v1/chat/completions" : "/v1/completions", body);
    let error = {};
    try { error = JSON.parse(r.text).error; } catch { error = { message: r.text }; }
    const message = String(error.message);
    const fields = Object.keys(c.body);
    const paramOk = fields.length === 1 ? String(error.param).startsWith(fields[0]) : error.param === null;
    const missing = c.words.filter((w) => !message.includes(w));
    if (r.status !== 400 || missing.length > 0 || !paramOk) {
      const p = `refusal "${c.name}" on ${model}: status ${r.status}, param ${error.param}, message ${JSON.stringify(message)}` +
                (missing.length ? ` lacks ${JSON.stringify(missing)}` : "");
      console.log(`FAIL ${p}`);
      failures.push(p);
    } else {
      ++refused;
      console.log(`ok   refusal ${c.name} on ${model}: ${error.param}: ${message.replace(/\s*\n\s*/g, " ")}`);
    }
  }
}
console.log(`refusals: ${refused} answered 400 naming the problem`);

if (failures.length > 0) {
  console.log(`${failures.length} failures`);
  process.exit(1);
}
