// Package rcs owns Flowgate's Google RCS Business Messaging (RBM) channel: a
// channel.Sender that sends agentMessages with an OAuth2 service-account
// token per agent, maps channel-neutral messages to text, rich cards and
// suggestions, uses a deterministic messageId as the idempotency key, and
// classifies RBM's answers; and the pure webhook helpers the ingress uses
// (client-token handshake, X-Goog-Signature check, Pub/Sub envelope parsing
// into inbound messages and delivery events).
package rcs
