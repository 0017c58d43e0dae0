// Package rcs owns Flowgate's Google RCS Business Messaging (RBM) channel: a
// channel.Sender that sends agentMessages with an OAuth2 service-account
// token per agent, maps channel-neutral messages to text, rich cards and
// suggestions, uses a deterministic messageId as the idempotency key, and
// classifies RBM's answers; the pure webhook helpers (client-token
// handshake, X-Goog-Signature check, Pub/Sub envelope parsing into inbound
// messages and delivery events); and Provider, the channel's one value in
// shared/provider's registry, through which the ingress and the worker use
// all of it.
package rcs
