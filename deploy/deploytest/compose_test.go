package deploytest

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	Build       any            `yaml:"build"`
	Command     []string       `yaml:"command"`
	Restart     string         `yaml:"restart"`
	EnvFile     any            `yaml:"env_file"`
	Environment map[string]any `yaml:"environment"`
	Volumes     []string       `yaml:"volumes"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Profiles []string `yaml:"profiles"`
	Ports    []string `yaml:"ports"`
}

// secretish are environment names whose values must come from .env.
var secretish = regexp.MustCompile(`(?i)(KEY|PASSWORD|SECRET|TOKEN|MONGODB_URI)`)

// TestComposeFile checks docker-compose.yml structurally: the services the
// deployment needs, health checks, restart policies, durable volumes,
// secrets only through the env file, and every referenced file present.
func TestComposeFile(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil { // yaml.v3 resolves the anchors and merge keys
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, s := range []string{"nats", "mongodb", "ingress", "orchestrator", "channel-sandbox", "channel-whatsapp", "channel-telegram", "channel-rcs", "prometheus", "grafana"} {
		if _, ok := cf.Services[s]; !ok {
			t.Errorf("service %s is missing", s)
		}
	}
	for name, s := range cf.Services {
		if s.Restart == "" || s.Restart == "no" {
			t.Errorf("%s: no restart policy", name)
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("%s: no health check", name)
		}
		for k, v := range s.Environment {
			if secretish.MatchString(k) {
				t.Errorf("%s: %s=%v is inline; secrets come from .env (env_file)", name, k, v)
			}
		}
		for _, v := range s.Volumes {
			src := strings.SplitN(v, ":", 2)[0]
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("%s mounts %s, which does not exist", name, src)
				}
			} else if _, ok := cf.Volumes[src]; !ok {
				t.Errorf("%s mounts volume %s, which is not declared", name, src)
			}
		}
		if s.Build != nil {
			// A Flowgate service: the one image, a command, the env file, and
			// it waits for NATS and MongoDB to be healthy.
			if s.Build != "." {
				t.Errorf("%s: build %v; every service builds the root Dockerfile", name, s.Build)
			}
			if len(s.Command) == 0 || !slices.Contains([]string{"ingress", "orchestrator", "channel"}, s.Command[0]) {
				t.Errorf("%s: command %v", name, s.Command)
			}
			if s.EnvFile != ".env" {
				t.Errorf("%s: env_file %v, want .env", name, s.EnvFile)
			}
			for _, dep := range []string{"nats", "mongodb"} {
				if s.DependsOn[dep].Condition != "service_healthy" {
					t.Errorf("%s: must wait for %s to be healthy", name, dep)
				}
			}
			if s.Environment["FLOWGATE_NATS_URL"] != "nats://nats:4222" {
				t.Errorf("%s: FLOWGATE_NATS_URL=%v", name, s.Environment["FLOWGATE_NATS_URL"])
			}
		}
	}
	if n := cf.Services["nats"]; !slices.Contains(n.Volumes, "nats-data:/data") || !slices.Contains(n.Volumes, "./deploy/nats/nats.conf:/etc/nats/nats.conf:ro") {
		t.Errorf("nats: needs its config and a durable data volume, has %v", n.Volumes)
	}
	if m := cf.Services["mongodb"]; !strings.Contains(strings.Join(m.Healthcheck.Test, " "), "rs.initiate") {
		t.Errorf("mongodb: the health check must initiate the replica set")
	}

	// The NATS config stores JetStream in the mounted volume and says how
	// it syncs.
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "nats", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"store_dir: /data/jetstream", "sync_interval:", "http: 0.0.0.0:8222"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("nats.conf lacks %q", want)
		}
	}

	// .env.example names every variable a secret lives in, and no .env is
	// committed or baked into the image.
	env := readEnv(t, filepath.Join(root, ".env.example"))
	for _, k := range []string{"FLOWGATE_ADMIN_KEY", "FLOWGATE_MONGODB_URI", "MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD", "GF_SECURITY_ADMIN_PASSWORD"} {
		if _, ok := env[k]; !ok {
			t.Errorf(".env.example lacks %s", k)
		}
	}
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(ignore), "\n"), ".env") {
		t.Error(".dockerignore must exclude .env")
	}
	docker, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "USER 10001", "AS build", "COPY --from=build"} {
		if !strings.Contains(string(docker), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if strings.Contains(string(docker), "ADMIN_KEY") || strings.Contains(string(docker), "MONGODB_URI") {
		t.Error("Dockerfile mentions a secret")
	}
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: malformed line %q", path, line)
		}
		out[k] = v
	}
	return out
}

// TestComposeConfig has docker-compose itself (Debian's package; there is
// no Docker engine here, and `config` needs none) parse and validate the
// file, with .env.example standing in for .env, with and without the
// providers profile.
func TestComposeConfig(t *testing.T) {
	requireTools(t, "docker-compose")
	root := repoRoot(t)
	dir := t.TempDir()
	for _, f := range []string{"docker-compose.yml", "Dockerfile", ".dockerignore"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".env"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "deploy"), filepath.Join(dir, "deploy")); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "docker-compose", "config", "-q")
	// The resolved config carries the env file's values into the services,
	// proving the file is read at run time (not built into the image), and
	// keeps the provider workers behind their profile.
	resolved := run(t, dir, "docker-compose", "--profile", "providers", "config")
	var cf struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
			Profiles    []string          `yaml:"profiles"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(resolved), &cf); err != nil {
		t.Fatal(err)
	}
	if len(cf.Services) != 10 {
		t.Errorf("docker-compose resolved %d services, want 10", len(cf.Services))
	}
	for _, p := range []string{"channel-whatsapp", "channel-telegram", "channel-rcs"} {
		if !slices.Contains(cf.Services[p].Profiles, "providers") {
			t.Errorf("%s should start only with --profile providers", p)
		}
	}
	if cf.Services["ingress"].Environment["FLOWGATE_ADMIN_KEY"] == "" {
		t.Errorf("the ingress does not get FLOWGATE_ADMIN_KEY from .env")
	}
}
