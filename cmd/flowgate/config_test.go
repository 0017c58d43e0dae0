package main

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestWebhookSettings(t *testing.T) {
	t.Setenv("FLOWGATE_WEBHOOK_RETRY_PERIOD", "")
	cfg, _, err := parseConfig("orchestrator", nil, io.Discard)
	if err == nil {
		t.Fatalf("an empty FLOWGATE_WEBHOOK_RETRY_PERIOD was accepted: %v", cfg.Webhooks.RetryPeriod)
	}
	t.Setenv("FLOWGATE_WEBHOOK_RETRY_PERIOD", "6h")
	t.Setenv("FLOWGATE_WEBHOOK_ALLOW_PRIVATE", "true")
	cfg, _, err = parseConfig("orchestrator", nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Webhooks.RetryPeriod != 6*time.Hour || !cfg.Webhooks.AllowPrivate {
		t.Fatalf("from the environment: %+v", cfg.Webhooks)
	}
	cfg, _, err = parseConfig("orchestrator", []string{"--webhook-retry-period", "90m", "--webhook-allow-private=false"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Webhooks.RetryPeriod != 90*time.Minute || cfg.Webhooks.AllowPrivate {
		t.Fatalf("from flags: %+v", cfg.Webhooks)
	}
	for _, bad := range []string{"0s", "-1h", "soon"} {
		if _, _, err := parseConfig("orchestrator", []string{"--webhook-retry-period", bad}, io.Discard); err == nil {
			t.Errorf("retry period %q accepted", bad)
		}
	}
}

func TestWebhookRetryPeriodDefault(t *testing.T) {
	for _, k := range []string{"FLOWGATE_WEBHOOK_RETRY_PERIOD", "FLOWGATE_WEBHOOK_ALLOW_PRIVATE"} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
	cfg, _, err := parseConfig("dev", nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Webhooks.RetryPeriod != 24*time.Hour || cfg.Webhooks.AllowPrivate {
		t.Fatalf("defaults: %+v", cfg.Webhooks)
	}
}

func TestDevListensOnLoopbackByDefault(t *testing.T) {
	t.Setenv("FLOWGATE_HTTP_ADDR", "")
	os.Unsetenv("FLOWGATE_HTTP_ADDR")
	cfg, _, err := parseConfig("dev", nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:8080" {
		t.Fatalf("dev listens on %q by default", cfg.HTTPAddr)
	}
	cfg, _, err = parseConfig("dev", []string{"--http-addr", "0.0.0.0:8080"}, io.Discard)
	if err != nil || cfg.HTTPAddr != "0.0.0.0:8080" {
		t.Fatalf("--http-addr: %q %v", cfg.HTTPAddr, err)
	}
	cfg, _, err = parseConfig("ingress", nil, io.Discard)
	if err != nil || cfg.HTTPAddr != ":8080" {
		t.Fatalf("the ingress service listens on %q by default (%v)", cfg.HTTPAddr, err)
	}
}

func TestNATSSettings(t *testing.T) {
	for _, k := range []string{"FLOWGATE_NATS_REPLICAS", "FLOWGATE_NATS_USER", "FLOWGATE_NATS_PASSWORD"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	cfg, _, err := parseConfig("ingress", nil, io.Discard)
	if err != nil || cfg.NATSReplicas != 1 {
		t.Fatalf("default replicas: %d, %v", cfg.NATSReplicas, err)
	}
	t.Setenv("FLOWGATE_NATS_REPLICAS", "3")
	t.Setenv("FLOWGATE_NATS_USER", "ingress")
	t.Setenv("FLOWGATE_NATS_PASSWORD", "s3cret")
	cfg, _, err = parseConfig("ingress", nil, io.Discard)
	if err != nil || cfg.NATSReplicas != 3 || cfg.NATSUser != "ingress" || cfg.NATSPassword != "s3cret" {
		t.Fatalf("from the environment: %+v, %v", cfg, err)
	}
	cfg, _, err = parseConfig("ingress", []string{"--nats-replicas", "1"}, io.Discard)
	if err != nil || cfg.NATSReplicas != 1 {
		t.Fatalf("from the flag: %d, %v", cfg.NATSReplicas, err)
	}
	for _, bad := range []string{"0", "2", "5", "three"} {
		if _, _, err := parseConfig("ingress", []string{"--nats-replicas", bad}, io.Discard); err == nil {
			t.Errorf("replicas %q accepted", bad)
		}
	}
}

// --trigger-batch (FLOWGATE_TRIGGER_BATCH): 0 is the default (256), 1 turns
// the ingress's group commit off; anything else but a count is refused.
func TestTriggerBatchSetting(t *testing.T) {
	t.Setenv("FLOWGATE_TRIGGER_BATCH", "")
	os.Unsetenv("FLOWGATE_TRIGGER_BATCH")
	cfg, _, err := parseConfig("ingress", nil, io.Discard)
	if err != nil || cfg.TriggerBatch != 0 {
		t.Fatalf("default: %d, %v", cfg.TriggerBatch, err)
	}
	t.Setenv("FLOWGATE_TRIGGER_BATCH", "1")
	if cfg, _, err = parseConfig("ingress", nil, io.Discard); err != nil || cfg.TriggerBatch != 1 {
		t.Fatalf("from the environment: %d, %v", cfg.TriggerBatch, err)
	}
	if cfg, _, err = parseConfig("ingress", []string{"--trigger-batch", "64"}, io.Discard); err != nil || cfg.TriggerBatch != 64 {
		t.Fatalf("from the flag: %d, %v", cfg.TriggerBatch, err)
	}
	for _, bad := range []string{"-1", "10001", "many", "2.5"} {
		if _, _, err := parseConfig("ingress", []string{"--trigger-batch", bad}, io.Discard); err == nil {
			t.Errorf("trigger batch %q accepted", bad)
		}
	}
}

// --webhook-publish-wait (FLOWGATE_WEBHOOK_PUBLISH_WAIT): 10 s by default,
// 0 answers a provider 503 at once (negative for the ingress), at most a
// minute; anything else is refused.
func TestWebhookPublishWaitSetting(t *testing.T) {
	t.Setenv("FLOWGATE_WEBHOOK_PUBLISH_WAIT", "")
	os.Unsetenv("FLOWGATE_WEBHOOK_PUBLISH_WAIT")
	cfg, _, err := parseConfig("ingress", nil, io.Discard)
	if err != nil || cfg.WebhookPublishWait != 10*time.Second {
		t.Fatalf("default: %v, %v", cfg.WebhookPublishWait, err)
	}
	t.Setenv("FLOWGATE_WEBHOOK_PUBLISH_WAIT", "0")
	if cfg, _, err = parseConfig("ingress", nil, io.Discard); err != nil || cfg.WebhookPublishWait >= 0 {
		t.Fatalf("0 from the environment: %v, %v", cfg.WebhookPublishWait, err)
	}
	if cfg, _, err = parseConfig("ingress", []string{"--webhook-publish-wait", "3s"}, io.Discard); err != nil || cfg.WebhookPublishWait != 3*time.Second {
		t.Fatalf("from the flag: %v, %v", cfg.WebhookPublishWait, err)
	}
	for _, bad := range []string{"-1s", "2m", "soon", "5"} {
		if _, _, err := parseConfig("ingress", []string{"--webhook-publish-wait", bad}, io.Discard); err == nil {
			t.Errorf("webhook publish wait %q accepted", bad)
		}
	}
}

// --nats-retry-wait (FLOWGATE_NATS_RETRY_WAIT): 0 by default (each
// service's own), 100 ms to 1 min; anything else is refused, naming the
// setting.
func TestNATSRetryWaitSetting(t *testing.T) {
	t.Setenv("FLOWGATE_NATS_RETRY_WAIT", "")
	os.Unsetenv("FLOWGATE_NATS_RETRY_WAIT")
	cfg, _, err := parseConfig("orchestrator", nil, io.Discard)
	if err != nil || cfg.NATSRetryWait != 0 {
		t.Fatalf("default: %v, %v", cfg.NATSRetryWait, err)
	}
	t.Setenv("FLOWGATE_NATS_RETRY_WAIT", "30s")
	if cfg, _, err = parseConfig("channel", []string{"sandbox"}, io.Discard); err != nil || cfg.NATSRetryWait != 30*time.Second {
		t.Fatalf("from the environment: %v, %v", cfg.NATSRetryWait, err)
	}
	if cfg, _, err = parseConfig("ingress", []string{"--nats-retry-wait", "500ms"}, io.Discard); err != nil || cfg.NATSRetryWait != 500*time.Millisecond {
		t.Fatalf("from the flag: %v, %v", cfg.NATSRetryWait, err)
	}
	for _, bad := range []string{"50ms", "2m", "-1s", "soon", "5"} {
		_, _, err := parseConfig("ingress", []string{"--nats-retry-wait", bad}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "NATS retry wait") {
			t.Errorf("NATS retry wait %q: %v, want an error naming the setting", bad, err)
		}
	}
}

func TestClaimLeaseSetting(t *testing.T) {
	t.Setenv("FLOWGATE_CLAIM_LEASE", "")
	os.Unsetenv("FLOWGATE_CLAIM_LEASE")
	cfg, _, err := parseConfig("orchestrator", nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClaimLease != time.Minute {
		t.Fatalf("default claim lease %v, want 1m", cfg.ClaimLease)
	}
	t.Setenv("FLOWGATE_CLAIM_LEASE", "90s")
	if cfg, _, err = parseConfig("dev", nil, io.Discard); err != nil || cfg.ClaimLease != 90*time.Second {
		t.Fatalf("from the environment: %v, %v", cfg.ClaimLease, err)
	}
	if cfg, _, err = parseConfig("orchestrator", []string{"--claim-lease", "30s"}, io.Discard); err != nil || cfg.ClaimLease != 30*time.Second {
		t.Fatalf("from the flag: %v, %v", cfg.ClaimLease, err)
	}
	for _, bad := range []string{"29s", "0", "-1m", "2h", "soon", ""} {
		_, _, err := parseConfig("orchestrator", []string{"--claim-lease", bad}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "claim lease") {
			t.Errorf("claim lease %q: %v, want an error naming the setting", bad, err)
		}
	}
	if _, _, err := parseConfig("ingress", []string{"--claim-lease", "1m"}, io.Discard); err == nil {
		t.Error("the ingress took --claim-lease, a setting of the orchestrator")
	}
}

func TestRetryMaxBackoffSetting(t *testing.T) {
	t.Setenv("FLOWGATE_RETRY_MAX_BACKOFF", "")
	os.Unsetenv("FLOWGATE_RETRY_MAX_BACKOFF")
	cfg, _, err := parseConfig("channel", []string{"whatsapp"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RetryBackoff != time.Minute {
		t.Fatalf("default retry max backoff %v, want 1m", cfg.RetryBackoff)
	}
	t.Setenv("FLOWGATE_RETRY_MAX_BACKOFF", "5s")
	if cfg, _, err = parseConfig("dev", nil, io.Discard); err != nil || cfg.RetryBackoff != 5*time.Second {
		t.Fatalf("from the environment: %v, %v", cfg.RetryBackoff, err)
	}
	for _, cmd := range []string{"orchestrator", "channel", "dev"} {
		if cfg, _, err = parseConfig(cmd, []string{"--retry-max-backoff", "100ms"}, io.Discard); err != nil || cfg.RetryBackoff != 100*time.Millisecond {
			t.Fatalf("%s, from the flag: %v, %v", cmd, cfg.RetryBackoff, err)
		}
	}
	for _, bad := range []string{"99ms", "0", "-1m", "11m", "soon", ""} {
		_, _, err := parseConfig("orchestrator", []string{"--retry-max-backoff", bad}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "retry max backoff") {
			t.Errorf("retry max backoff %q: %v, want an error naming the setting", bad, err)
		}
	}
	if _, _, err := parseConfig("ingress", []string{"--retry-max-backoff", "1m"}, io.Discard); err == nil {
		t.Error("the ingress took --retry-max-backoff; it consumes no stream")
	}
}
