package main

import (
	"io"
	"os"
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
