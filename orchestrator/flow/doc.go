// Package flow owns Flowgate's flow language and its interpreter.
//
// A flow is a list of steps written in JSON or YAML (one schema, published
// as docs/flow.schema.json). [Parse] decodes and validates a document into a
// [Definition]; validation rejects anything the interpreter could trip over
// later (unknown step types, dangling references, unreachable steps, bad
// expressions or regular expressions, loops that never wait) so that a saved
// flow can only fail at run time for reasons that depend on run data.
//
// [Apply] is the interpreter: (definition, run state, event) → (new state,
// effects). It performs no I/O and reads no clock — time arrives in every
// event's Now field — so the same inputs always give the same outputs. The
// orchestrator's runner loads a run's [State], applies an [Event] (start,
// reply, timer, HTTP result, WhatsApp Flow completion, delivery failure,
// cancel, expire, fail), performs the returned [Effect] values (send a message,
// schedule a timer, call HTTP, persist contact attributes, hand over to
// another flow) and stores the new state with a version check.
//
// Text fields accept placeholders such as {{ name }}, {{ data.plan }} and
// {{ attributes.city }}; a missing value renders as the empty string.
// Conditions use github.com/expr-lang/expr. See docs/flows.md.
package flow
