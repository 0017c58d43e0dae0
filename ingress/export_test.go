package ingress

// WebhookPublishRetries is flowgate_webhook_publish_retries_total, for tests.
var WebhookPublishRetries = webhookPublishRetries
