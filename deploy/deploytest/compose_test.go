package deploytest

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
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

// secretish are environment names whose values must come from env files.
var secretish = regexp.MustCompile(`(?i)(KEY|PASSWORD|SECRET|TOKEN|MONGODB_URI)`)

// composeVariant is one of the two compose files: the three-node NATS
// cluster and the single-node install.
type composeVariant struct {
	file     string
	nats     []string // the NATS server services
	conf     string   // the NATS config they run
	replicas string   // FLOWGATE_NATS_REPLICAS
}

var composeVariants = []composeVariant{
	{"docker-compose.yml", []string{"nats-1", "nats-2", "nats-3"}, "/etc/nats/cluster.conf", "3"},
	{"docker-compose.single.yml", []string{"nats"}, "/etc/nats/nats.conf", "1"},
}

// flowgateServices are the compose services running the flowgate binary;
// each has its own env file and NATS user of the same name.
var flowgateServices = []string{"ingress", "orchestrator", "channel-sandbox", "channel-whatsapp", "channel-telegram", "channel-rcs"}

func readCompose(t *testing.T, root, file string) composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil { // yaml.v3 resolves the anchors and merge keys
		t.Fatalf("%s: %v", file, err)
	}
	return cf
}

// natsServerVersion is the nats-server version of go.mod: the one
// `flowgate dev` embeds and the tests run.
func natsServerVersion(t *testing.T, root string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github.com/nats-io/nats-server/v2 v(\d+\.\d+\.\d+)`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("go.mod requires no nats-server/v2")
	}
	return string(m[1])
}

// exporterVersion is the version of the NATS Prometheus exporter kept in
// exporterDir (its VERSION file, "v" and the release's number).
func exporterVersion(t *testing.T, root string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, exporterDir, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(raw)), "v")
	if !ok || v == "" {
		t.Fatalf("%s/VERSION: %q, want v and a release number", exporterDir, raw)
	}
	return v
}

// TestComposeFile checks both compose files structurally: the services the
// deployment needs, health checks, restart policies, durable volumes, every
// secret in a per-service env file (never inline), every referenced file
// present, all NATS servers given to every Flowgate service, the NATS image
// of the module's nats-server version, the NATS exporter's image of the
// version TestPrometheusEndToEnd runs, and that the two files differ only
// in NATS.
func TestComposeFile(t *testing.T) {
	root := repoRoot(t)
	version := natsServerVersion(t, root)
	exporter := exporterVersion(t, root)
	files := map[string]composeFile{}
	for _, v := range composeVariants {
		cf := readCompose(t, root, v.file)
		files[v.file] = cf
		want := append([]string{"mongodb", "prometheus", "grafana"}, flowgateServices...)
		want = append(want, v.nats...)
		for _, s := range want {
			if _, ok := cf.Services[s]; !ok {
				t.Errorf("%s: service %s is missing", v.file, s)
			}
		}
		var urls []string
		for _, n := range v.nats {
			urls = append(urls, "nats://"+n+":4222")
		}
		for name, s := range cf.Services {
			where := v.file + ": " + name
			if s.Restart == "" || s.Restart == "no" {
				t.Errorf("%s: no restart policy", where)
			}
			if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
				t.Errorf("%s: no health check", where)
			}
			for k, val := range s.Environment {
				if secretish.MatchString(k) {
					t.Errorf("%s: %s=%v is inline; secrets come from deploy/env (env_file)", where, k, val)
				}
			}
			for _, vol := range s.Volumes {
				src := strings.SplitN(vol, ":", 2)[0]
				if strings.HasPrefix(src, "./") {
					if _, err := os.Stat(filepath.Join(root, src)); err != nil {
						t.Errorf("%s mounts %s, which does not exist", where, src)
					}
				} else if _, ok := cf.Volumes[src]; !ok {
					t.Errorf("%s mounts volume %s, which is not declared", where, src)
				}
			}
			if s.EnvFile != nil {
				// One env file per service (or per NATS/MongoDB/Grafana), with
				// an example beside it.
				ef, _ := s.EnvFile.(string)
				if !strings.HasPrefix(ef, "./deploy/env/") || !strings.HasSuffix(ef, ".env") {
					t.Errorf("%s: env_file %v; want one file under ./deploy/env/", where, s.EnvFile)
				} else if _, err := os.Stat(filepath.Join(root, ef+".example")); err != nil {
					t.Errorf("%s: %s.example is missing", where, ef)
				}
			}
			if s.Build != nil {
				// A Flowgate service: the one image, a command, its own env
				// file, every NATS server, and it waits for NATS and MongoDB.
				if s.Build != "." {
					t.Errorf("%s: build %v; every service builds the root Dockerfile", where, s.Build)
				}
				if len(s.Command) == 0 || !slices.Contains([]string{"ingress", "orchestrator", "channel"}, s.Command[0]) {
					t.Errorf("%s: command %v", where, s.Command)
				}
				if !slices.Contains(flowgateServices, name) {
					t.Errorf("%s: not a known Flowgate service", where)
				}
				if s.EnvFile != "./deploy/env/"+name+".env" {
					t.Errorf("%s: env_file %v, want ./deploy/env/%s.env (secrets scoped per service)", where, s.EnvFile, name)
				}
				for _, dep := range append([]string{"mongodb"}, v.nats...) {
					if s.DependsOn[dep].Condition != "service_healthy" {
						t.Errorf("%s: must wait for %s to be healthy", where, dep)
					}
				}
				if got := s.Environment["FLOWGATE_NATS_URL"]; got != strings.Join(urls, ",") {
					t.Errorf("%s: FLOWGATE_NATS_URL=%v, want every NATS server %s", where, got, strings.Join(urls, ","))
				}
				if got := s.Environment["FLOWGATE_NATS_REPLICAS"]; got != v.replicas {
					t.Errorf("%s: FLOWGATE_NATS_REPLICAS=%v, want %s", where, got, v.replicas)
				}
			}
		}
		for name, s := range cf.Services {
			if strings.HasPrefix(name, "nats-exporter") && s.Image != "natsio/prometheus-nats-exporter:"+exporter {
				t.Errorf("%s: %s runs %s; want natsio/prometheus-nats-exporter:%s, the version in %s (TestPrometheusEndToEnd runs it)",
					v.file, name, s.Image, exporter, exporterDir)
			}
		}
		for _, n := range v.nats {
			s := cf.Services[n]
			if s.Image != "nats:"+version+"-alpine" {
				t.Errorf("%s: %s runs %s; want nats:%s-alpine, the nats-server of go.mod (flowgate dev and the tests)", v.file, n, s.Image, version)
			}
			if !slices.Equal(s.Command, []string{"-c", v.conf}) {
				t.Errorf("%s: %s command %v, want -c %s", v.file, n, s.Command, v.conf)
			}
			if !slices.Contains(s.Volumes, "./deploy/nats:/etc/nats:ro") || !slices.Contains(s.Volumes, n+"-data:/data") {
				t.Errorf("%s: %s needs deploy/nats and its own data volume, has %v", v.file, n, s.Volumes)
			}
			if s.EnvFile != "./deploy/env/nats.env" {
				t.Errorf("%s: %s gets its users' passwords from ./deploy/env/nats.env, not %v", v.file, n, s.EnvFile)
			}
			if len(v.nats) > 1 && s.Environment["NATS_SERVER_NAME"] != n {
				t.Errorf("%s: %s NATS_SERVER_NAME=%v", v.file, n, s.Environment["NATS_SERVER_NAME"])
			}
			// Its Prometheus exporter.
			exp := "nats-exporter"
			if len(v.nats) > 1 {
				exp += strings.TrimPrefix(n, "nats")
			}
			e, ok := cf.Services[exp]
			if !ok || len(e.Command) == 0 || e.Command[len(e.Command)-1] != "http://"+n+":8222" || !slices.Contains(e.Command, "-jsz=all") {
				t.Errorf("%s: %s has no exporter %s reading http://%s:8222 with -jsz=all (%v)", v.file, n, exp, n, e.Command)
			}
		}
		if m := cf.Services["mongodb"]; !strings.Contains(strings.Join(m.Healthcheck.Test, " "), "rs.initiate") {
			t.Errorf("%s: mongodb: the health check must initiate the replica set", v.file)
		}
		if m := cf.Services["mongodb"]; !slices.Contains(m.Volumes, "./deploy/mongodb/init:/docker-entrypoint-initdb.d:ro") {
			t.Errorf("%s: mongodb must run deploy/mongodb/init (Flowgate's least-privileged user)", v.file)
		}
	}
	// The two files differ only in NATS.
	normal := func(cf composeFile) map[string]composeService {
		out := map[string]composeService{}
		for name, s := range cf.Services {
			if strings.HasPrefix(name, "nats") {
				continue
			}
			env := map[string]any{}
			for k, v := range s.Environment {
				if k != "FLOWGATE_NATS_URL" && k != "FLOWGATE_NATS_REPLICAS" {
					env[k] = v
				}
			}
			s.Environment = env
			deps := map[string]struct {
				Condition string `yaml:"condition"`
			}{}
			for k, v := range s.DependsOn {
				if !strings.HasPrefix(k, "nats") {
					deps[k] = v
				}
			}
			s.DependsOn = deps
			out[name] = s
		}
		return out
	}
	if a, b := normal(files["docker-compose.yml"]), normal(files["docker-compose.single.yml"]); !reflect.DeepEqual(a, b) {
		t.Errorf("docker-compose.yml and docker-compose.single.yml differ beyond NATS:\n%v\n%v", a, b)
	}

	// The NATS configs store JetStream in the mounted volume, say how they
	// sync, serve monitoring and include the users.
	for _, f := range []string{"nats.conf", "cluster.conf"} {
		conf, err := os.ReadFile(filepath.Join(root, "deploy", "nats", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"store_dir: /data/jetstream", "sync_interval:", "http: 0.0.0.0:8222", "include ./auth.conf"} {
			if !strings.Contains(string(conf), want) {
				t.Errorf("%s lacks %q", f, want)
			}
		}
	}

	checkEnvFiles(t, root)

	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".env", "deploy"} {
		if !slices.Contains(strings.Split(string(ignore), "\n"), want) {
			t.Errorf(".dockerignore must exclude %s", want)
		}
	}
	gitignore, err := os.ReadFile(filepath.Join(root, ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(gitignore), "\n"), "/deploy/env/*.env") {
		t.Error(".gitignore must exclude deploy/env/*.env")
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

// checkEnvFiles: each secret lives only in the env file of the one service
// that needs it, the Flowgate services reach MongoDB as the
// least-privileged user, and every NATS user of auth.conf has its password
// in nats.env and, for a Flowgate service, the same one in its env file.
func checkEnvFiles(t *testing.T, root string) {
	t.Helper()
	dir := filepath.Join(root, "deploy", "env")
	files, _ := filepath.Glob(filepath.Join(dir, "*.env.example"))
	env := map[string]map[string]string{}
	for _, f := range files {
		env[strings.TrimSuffix(filepath.Base(f), ".env.example")] = readEnv(t, f)
	}
	only := map[string]string{
		"FLOWGATE_ADMIN_KEY": "ingress", "MONGO_INITDB_ROOT_USERNAME": "mongodb", "MONGO_INITDB_ROOT_PASSWORD": "mongodb",
		"GF_SECURITY_ADMIN_PASSWORD": "grafana", "NATS_ADMIN_PASSWORD": "nats",
	}
	for k, owner := range only {
		for name, vars := range env {
			if _, ok := vars[k]; ok != (name == owner) {
				t.Errorf("deploy/env/%s.env.example: %s present=%v; it belongs to %s only", name, k, ok, owner)
			}
		}
	}
	mongo := env["mongodb"]
	auth, err := os.ReadFile(filepath.Join(root, "deploy", "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(auth), "no_auth_user") {
		t.Error("auth.conf allows anonymous clients (no_auth_user)")
	}
	users := regexp.MustCompile(`user: ([a-z-]+), password: \$(\w+)`).FindAllStringSubmatch(string(auth), -1)
	if len(users) != len(flowgateServices)+1 {
		t.Errorf("auth.conf: users %v; want admin and one per Flowgate service", users)
	}
	passwords := map[string]string{}
	for _, u := range users {
		if _, ok := env["nats"][u[2]]; !ok {
			t.Errorf("nats.env.example lacks %s (user %s)", u[2], u[1])
		}
		passwords[u[1]] = env["nats"][u[2]]
	}
	for _, svc := range flowgateServices {
		vars, ok := env[svc]
		if !ok {
			t.Errorf("deploy/env/%s.env.example is missing", svc)
			continue
		}
		if vars["FLOWGATE_NATS_USER"] != svc || vars["FLOWGATE_NATS_PASSWORD"] == "" || vars["FLOWGATE_NATS_PASSWORD"] != passwords[svc] {
			t.Errorf("%s.env.example: NATS user %q with a password different from nats.env's", svc, vars["FLOWGATE_NATS_USER"])
		}
		want := "mongodb://" + mongo["FLOWGATE_MONGO_USER"] + ":" + mongo["FLOWGATE_MONGO_PASSWORD"] + "@mongodb:27017/" + mongo["FLOWGATE_MONGODB_DATABASE"] + "?"
		if uri := vars["FLOWGATE_MONGODB_URI"]; !strings.HasPrefix(uri, want) || strings.Contains(uri, mongo["MONGO_INITDB_ROOT_PASSWORD"]) {
			t.Errorf("%s.env.example: FLOWGATE_MONGODB_URI %q; want Flowgate's own user (%s…)", svc, uri, want)
		}
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
// no Docker engine here, and `config` needs none) parse and validate both
// files, with the env file examples standing in for the env files, with and
// without the providers profile.
func TestComposeConfig(t *testing.T) {
	requireTools(t, "docker-compose")
	root := repoRoot(t)
	dir := t.TempDir()
	for _, f := range []string{"docker-compose.yml", "docker-compose.single.yml", "Dockerfile", ".dockerignore"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// deploy/ as in the repository, with deploy/env/*.env from the examples.
	entries, err := os.ReadDir(filepath.Join(root, "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "env" {
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, "deploy"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(root, "deploy", e.Name()), filepath.Join(dir, "deploy", e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	examples, _ := filepath.Glob(filepath.Join(root, "deploy", "env", "*.env.example"))
	if err := os.MkdirAll(filepath.Join(dir, "deploy", "env"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range examples {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "deploy", "env", strings.TrimSuffix(filepath.Base(f), ".example")), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range composeVariants {
		run(t, dir, "docker-compose", "-f", v.file, "config", "-q")
		// The resolved config carries the env files' values into the
		// services, proving they are read at run time (not built into the
		// image), scoped per service, and keeps the provider workers behind
		// their profile.
		resolved := run(t, dir, "docker-compose", "-f", v.file, "--profile", "providers", "config")
		var cf struct {
			Services map[string]struct {
				Environment map[string]string `yaml:"environment"`
				Profiles    []string          `yaml:"profiles"`
			} `yaml:"services"`
		}
		if err := yaml.Unmarshal([]byte(resolved), &cf); err != nil {
			t.Fatal(err)
		}
		if want := 9 + 2*len(v.nats); len(cf.Services) != want {
			t.Errorf("%s: docker-compose resolved %d services, want %d", v.file, len(cf.Services), want)
		}
		for _, p := range []string{"channel-whatsapp", "channel-telegram", "channel-rcs"} {
			if !slices.Contains(cf.Services[p].Profiles, "providers") {
				t.Errorf("%s: %s should start only with --profile providers", v.file, p)
			}
		}
		if cf.Services["ingress"].Environment["FLOWGATE_ADMIN_KEY"] == "" {
			t.Errorf("%s: the ingress does not get FLOWGATE_ADMIN_KEY from its env file", v.file)
		}
		for name, s := range cf.Services {
			if name != "ingress" && s.Environment["FLOWGATE_ADMIN_KEY"] != "" {
				t.Errorf("%s: %s gets the admin key", v.file, name)
			}
			if name != "mongodb" && s.Environment["MONGO_INITDB_ROOT_PASSWORD"] != "" {
				t.Errorf("%s: %s gets the MongoDB root password", v.file, name)
			}
			if name != "grafana" && s.Environment["GF_SECURITY_ADMIN_PASSWORD"] != "" {
				t.Errorf("%s: %s gets Grafana's admin password", v.file, name)
			}
		}
		for _, n := range v.nats {
			if cf.Services[n].Environment["NATS_INGRESS_PASSWORD"] == "" {
				t.Errorf("%s: %s does not get the NATS users' passwords", v.file, n)
			}
		}
	}
}
