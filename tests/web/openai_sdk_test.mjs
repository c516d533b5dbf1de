// The official OpenAI Node SDK (npm "openai") against a running ferry-server whose model `model`
// calls tools in a format ferry parses (tests/integration/openai_scripted_test.cc starts one with
// the scripted_llm test backend). Checks, streamed and not:
//   - a tool call round trip: request with tools -> tool_calls -> tool message -> final answer;
//   - the Responses API's text (responses.create, and its stream of events).
// Prints one line per check; exits 1 on the first failure.
//
//   node openai_sdk_test.mjs --url http://127.0.0.1:PORT --model NAME
import OpenAI from "openai";
import assert from "node:assert/strict";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const client = new OpenAI({ baseURL: `${args.url}/v1`, apiKey: "unused" });
const model = args.model;

const tools = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];
const question = [{ role: "user", content: "Paris" }];

// One round trip; `call` gets the assistant message with its tool_calls.
async function roundTrip(label, call) {
  const assistant = await call(question);
  assert.equal(assistant.tool_calls.length, 1, `${label}: one call`);
  const tc = assistant.tool_calls[0];
  assert.equal(tc.type, "function");
  assert.equal(tc.function.name, "get_weather");
  assert.deepEqual(JSON.parse(tc.function.arguments), { city: "Paris" });
  const messages = [...question, assistant, { role: "tool", tool_call_id: tc.id, content: "sunny, 21 C" }];
  const final = await client.chat.completions.create({ model, messages, tools });
  assert.equal(final.choices[0].finish_reason, "stop");
  assert.equal(final.choices[0].message.content, "The tool said: sunny, 21 C");
  console.log(`${label}: call ${tc.id} ${tc.function.name}(${tc.function.arguments}) -> "${final.choices[0].message.content}"`);
}

await roundTrip("tool round trip", async (messages) => {
  const r = await client.chat.completions.create({ model, messages, tools });
  assert.equal(r.choices[0].finish_reason, "tool_calls");
  return r.choices[0].message;
});

await roundTrip("tool round trip, streamed", async (messages) => {
  // The SDK's stream helper assembles the tool_calls deltas into the final message.
  const runner = client.chat.completions.stream({ model, messages, tools });
  const completion = await runner.finalChatCompletion();
  assert.equal(completion.choices[0].finish_reason, "tool_calls");
  return completion.choices[0].message;
});

const response = await client.responses.create({ model, input: "hello", instructions: "Be brief." });
assert.equal(response.status, "completed");
assert.equal(response.output_text, "You said: hello");
console.log(`responses: ${response.id} "${response.output_text}" usage ${JSON.stringify(response.usage)}`);

const stream = await client.responses.create({ model, input: "streaming", stream: true });
let deltas = "";
const types = [];
let completed = null;
for await (const event of stream) {
  types.push(event.type);
  if (event.type === "response.output_text.delta") deltas += event.delta;
  if (event.type === "response.completed") completed = event.response;
}
assert.equal(deltas, "You said: streaming");
assert.ok(completed, "a response.completed event");
assert.equal(completed.output_text ?? completed.output[0].content[0].text, deltas);
console.log(`responses, streamed: ${types.length} events, text "${deltas}"`);
