package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var cmpPrefix = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "partnerhub.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func defaults() Config {
	return Config{
		Addr:              ":8080",
		PublicURL:         "http://localhost:8080",
		DataDir:           "./data",
		MaxBodyBytes:      1 << 20,
		ShutdownTimeout:   15 * time.Second,
		LogLevel:          "info",
		SweepInterval:     30 * time.Second,
		ReconcileInterval: 5 * time.Minute,
		RawRetention:      90 * 24 * time.Hour,
		QueueName:         "partnerhub",
		QueuePollInterval: 10 * time.Millisecond,
		Roles:             []string{"api", "ingest", "worker"},
	}
}

func TestLoad(t *testing.T) {
	const (
		adminKey  = "admin-key-0123456789abcdef"
		secretKey = "secret-key-0123456789abcdef0123456789"
	)
	tests := []struct {
		name string
		file string // YAML; empty means no file
		env  map[string]string
		want func(c *Config)
	}{
		{
			name: "defaults",
			want: func(c *Config) {},
		},
		{
			name: "retry schedule",
			env:  map[string]string{"PARTNERHUB_RETRY_SCHEDULE": "0, 1s,30s ,5m"},
			want: func(c *Config) {
				c.RetrySchedule = []time.Duration{0, time.Second, 30 * time.Second, 5 * time.Minute}
			},
		},
		{
			name: "public url follows the port of addr",
			env:  map[string]string{"PARTNERHUB_ADDR": "127.0.0.1:9000"},
			want: func(c *Config) {
				c.Addr = "127.0.0.1:9000"
				c.PublicURL = "http://localhost:9000"
			},
		},
		{
			name: "every environment variable",
			env: map[string]string{
				"PARTNERHUB_ADDR":                ":9090",
				"PARTNERHUB_PUBLIC_URL":          "https://hub.example.com/partnerhub/",
				"PARTNERHUB_DATA_DIR":            "/var/lib/partnerhub",
				"PARTNERHUB_ADMIN_KEY":           adminKey,
				"PARTNERHUB_SECRET_KEY":          secretKey,
				"PARTNERHUB_OUTBOUND_ALLOW_NETS": "127.0.0.0/8, 10.1.2.3/16,::1/128",
				"DATABASE_URL":                   "postgres://u:p@db:5432/hub?sslmode=disable",
				"REDIS_URL":                      "rediss://:pw@cache:6380/2",
				"PARTNERHUB_MAX_BODY_BYTES":      "65536",
				"PARTNERHUB_SHUTDOWN_TIMEOUT":    "1m30s",
				"PARTNERHUB_LOG_LEVEL":           "DEBUG",
				"PARTNERHUB_SWEEP_INTERVAL":      "5s",
				"PARTNERHUB_RECONCILE_INTERVAL":  "1m",
				"PARTNERHUB_RAW_RETENTION":       "30d",
				"PARTNERHUB_QUEUE":               "shop-a",
				"PARTNERHUB_QUEUE_POLL_INTERVAL": "50ms",
				"PARTNERHUB_ROLES":               "worker, api",
			},
			want: func(c *Config) {
				*c = Config{
					Addr:      ":9090",
					PublicURL: "https://hub.example.com/partnerhub",
					DataDir:   "/var/lib/partnerhub",
					AdminKey:  adminKey,
					SecretKey: secretKey,
					OutboundAllowNets: []netip.Prefix{
						netip.MustParsePrefix("127.0.0.0/8"),
						netip.MustParsePrefix("10.1.0.0/16"),
						netip.MustParsePrefix("::1/128"),
					},
					DatabaseURL:       "postgres://u:p@db:5432/hub?sslmode=disable",
					RedisURL:          "rediss://:pw@cache:6380/2",
					MaxBodyBytes:      65536,
					ShutdownTimeout:   90 * time.Second,
					LogLevel:          "debug",
					SweepInterval:     5 * time.Second,
					ReconcileInterval: time.Minute,
					RawRetention:      30 * 24 * time.Hour,
					QueueName:         "shop-a",
					QueuePollInterval: 50 * time.Millisecond,
					Roles:             []string{"api", "worker"},
				}
			},
		},
		{
			name: "yaml file with lists",
			file: `
addr: ":7000"
data_dir: /srv/ph
outbound_allow_nets:
  - 127.0.0.0/8
  - 192.168.0.0/16
roles: [ingest]
shutdown_timeout: 5s
max_body_bytes: 2048
database_url: postgresql:///hub?host=/run/postgresql
log_level:
`,
			want: func(c *Config) {
				c.Addr = ":7000"
				c.PublicURL = "http://localhost:7000"
				c.DataDir = "/srv/ph"
				c.OutboundAllowNets = []netip.Prefix{
					netip.MustParsePrefix("127.0.0.0/8"),
					netip.MustParsePrefix("192.168.0.0/16"),
				}
				c.Roles = []string{"ingest"}
				c.ShutdownTimeout = 5 * time.Second
				c.MaxBodyBytes = 2048
				c.DatabaseURL = "postgresql:///hub?host=/run/postgresql"
			},
		},
		{
			name: "yaml csv list",
			file: "outbound_allow_nets: 127.0.0.0/8,10.0.0.0/8\nroles: api,ingest\n",
			want: func(c *Config) {
				c.OutboundAllowNets = []netip.Prefix{
					netip.MustParsePrefix("127.0.0.0/8"),
					netip.MustParsePrefix("10.0.0.0/8"),
				}
				c.Roles = []string{"api", "ingest"}
			},
		},
		{
			name: "environment overrides the file",
			file: "addr: \":7000\"\nlog_level: warn\nredis_url: redis://file:6379\n",
			env: map[string]string{
				"PARTNERHUB_ADDR": ":7001",
				"REDIS_URL":       "redis://env:6379/0",
				"DATABASE_URL":    "", // empty counts as unset
			},
			want: func(c *Config) {
				c.Addr = ":7001"
				c.PublicURL = "http://localhost:7001"
				c.LogLevel = "warn"
				c.RedisURL = "redis://env:6379/0"
			},
		},
		{
			name: "empty file",
			file: "# nothing here\n",
			want: func(c *Config) {},
		},
		{
			name: "raw retention as a Go duration",
			env:  map[string]string{"PARTNERHUB_RAW_RETENTION": "36h"},
			want: func(c *Config) { c.RawRetention = 36 * time.Hour },
		},
		{
			name: "raw retention in yaml",
			file: "raw_retention: 7d\n",
			want: func(c *Config) { c.RawRetention = 7 * 24 * time.Hour },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			got, err := Load(path, envMap(tt.env))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := defaults()
			tt.want(&want)
			if diff := cmp.Diff(&want, got, cmpPrefix); diff != "" {
				t.Errorf("Load mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadInvalid(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		// want lists substrings, one per expected problem, in order.
		want []string
		// hidden must not appear in the error (secrets).
		hidden []string
	}{
		{
			name: "several bad variables reported at once",
			env: map[string]string{
				"PARTNERHUB_ADDR":                "localhost",
				"PARTNERHUB_ADMIN_KEY":           "short-admin",
				"PARTNERHUB_SECRET_KEY":          "short-secret",
				"PARTNERHUB_OUTBOUND_ALLOW_NETS": "127.0.0.0/8,10.0.0.300/8,nope",
				"DATABASE_URL":                   "mysql://root:hunter2@db/hub",
				"REDIS_URL":                      "http://:hunter3@cache",
				"PARTNERHUB_MAX_BODY_BYTES":      "1MB",
				"PARTNERHUB_SHUTDOWN_TIMEOUT":    "15",
				"PARTNERHUB_LOG_LEVEL":           "verbose",
				"PARTNERHUB_ROLES":               "api,scheduler",
				"PARTNERHUB_QUEUE_POLL_INTERVAL": "1m",
			},
			want: []string{
				`PARTNERHUB_ADDR: must be host:port`,
				`PARTNERHUB_ADMIN_KEY: must be at least 24 characters`,
				`PARTNERHUB_SECRET_KEY: must be at least 32 characters`,
				`PARTNERHUB_OUTBOUND_ALLOW_NETS: not a CIDR such as 127.0.0.0/8: "10.0.0.300/8", "nope"`,
				`DATABASE_URL: must be a postgres:// or postgresql:// URL`,
				`REDIS_URL: must be a redis:// or rediss:// URL`,
				`PARTNERHUB_MAX_BODY_BYTES: must be a positive number of bytes: "1MB"`,
				`PARTNERHUB_SHUTDOWN_TIMEOUT: must be a positive Go duration`,
				`PARTNERHUB_LOG_LEVEL: must be one of debug, info, warn, error: "verbose"`,
				`PARTNERHUB_QUEUE_POLL_INTERVAL: must be a Go duration from 1ms to 10s such as 200ms: "1m"`,
				`PARTNERHUB_ROLES: unknown role "scheduler"`,
			},
			hidden: []string{"short-admin", "short-secret", "hunter2", "hunter3"},
		},
		{
			name: "public url",
			env:  map[string]string{"PARTNERHUB_PUBLIC_URL": "https://hub.example.com/?x=1"},
			want: []string{`PARTNERHUB_PUBLIC_URL: must not include a query`},
		},
		{
			name: "relative public url",
			env:  map[string]string{"PARTNERHUB_PUBLIC_URL": "hub.example.com"},
			want: []string{`PARTNERHUB_PUBLIC_URL: must be an absolute http:// or https:// URL`},
		},
		{
			name: "redis database number",
			env:  map[string]string{"REDIS_URL": "redis://cache:6379/queue"},
			want: []string{`REDIS_URL: path must be a database number`},
		},
		{
			name: "raw retention too short",
			env:  map[string]string{"PARTNERHUB_RAW_RETENTION": "30m"},
			want: []string{`PARTNERHUB_RAW_RETENTION: must be a Go duration of at least 1h such as 720h, or a number of days such as 90d: "30m"`},
		},
		{
			name: "raw retention not a duration",
			env:  map[string]string{"PARTNERHUB_RAW_RETENTION": "90 days"},
			want: []string{`PARTNERHUB_RAW_RETENTION: must be a Go duration of at least 1h`},
		},
		{
			name: "raw retention of zero days",
			env:  map[string]string{"PARTNERHUB_RAW_RETENTION": "0d"},
			want: []string{`PARTNERHUB_RAW_RETENTION: must be a Go duration of at least 1h`},
		},
		{
			name: "no roles",
			env:  map[string]string{"PARTNERHUB_ROLES": " , "},
			want: []string{`PARTNERHUB_ROLES: must name at least one of api, ingest, worker`},
		},
		{
			name: "unknown yaml keys and bad file values",
			file: "addr: \":1\"\nlisten: \":2\"\nlog_level: loud\nroles: {api: true}\nmax_body: 3\n",
			want: []string{
				`line 2: unknown key "listen"`,
				`line 5: unknown key "max_body"`,
				`PARTNERHUB_LOG_LEVEL: must be one of debug, info, warn, error: "loud" (set as log_level in`,
				`PARTNERHUB_ROLES: roles in`,
			},
		},
		{
			name: "environment fixes a bad file value",
			file: "log_level: loud\nshutdown_timeout: soon\n",
			env:  map[string]string{"PARTNERHUB_LOG_LEVEL": "error"},
			want: []string{`PARTNERHUB_SHUTDOWN_TIMEOUT: must be a positive Go duration such as 15s: "soon" (set as shutdown_timeout in`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			c, err := Load(path, envMap(tt.env))
			if err == nil {
				t.Fatalf("Load = %+v, want an error", c)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Load error %T %v, want *ValidationError", err, err)
			}
			if len(ve.Problems) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ve.Problems), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(ve.Problems[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, ve.Problems[i], w)
				}
				if !strings.Contains(err.Error(), ve.Problems[i]) {
					t.Errorf("error message does not list problem %q", ve.Problems[i])
				}
			}
			for _, h := range tt.hidden {
				if strings.Contains(err.Error(), h) {
					t.Errorf("error message reveals %q:\n%v", h, err)
				}
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct {
		name string
		path func(t *testing.T) string
	}{
		{"missing file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none.yaml") }},
		{"malformed yaml", func(t *testing.T) string { return writeFile(t, "addr: [\n") }},
		{"not a mapping", func(t *testing.T) string { return writeFile(t, "- addr\n") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Load(tt.path(t), envMap(nil)); err == nil {
				t.Fatal("Load succeeded, want an error")
			}
		})
	}
}

func TestValidateZeroConfig(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := defaults()
	if diff := cmp.Diff(&want, &c, cmpPrefix); diff != "" {
		t.Errorf("defaults mismatch (-want +got):\n%s", diff)
	}
}

func TestEmbeddedAndRoles(t *testing.T) {
	tests := []struct {
		name         string
		cfg          Config
		embedded     bool
		api, workers bool
	}{
		{"zero", Config{}, true, true, true},
		{"postgres only", Config{DatabaseURL: "postgres://db/hub"}, false, true, true},
		{"redis only", Config{RedisURL: "redis://cache"}, false, true, true},
		{"worker role", Config{Roles: []string{"worker"}}, true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.Embedded(); got != tt.embedded {
				t.Errorf("Embedded() = %v, want %v", got, tt.embedded)
			}
			if got := tt.cfg.HasRole(RoleAPI); got != tt.api {
				t.Errorf("HasRole(api) = %v, want %v", got, tt.api)
			}
			if got := tt.cfg.HasRole(RoleWorker); got != tt.workers {
				t.Errorf("HasRole(worker) = %v, want %v", got, tt.workers)
			}
			if tt.cfg.HasRole("scheduler") {
				t.Error("HasRole(scheduler) = true")
			}
		})
	}
}

func TestLoadOrCreateSecretKey(t *testing.T) {
	t.Run("creates once and reads back", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		key, err := LoadOrCreateSecretKey(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(key) < MinSecretKeyLen {
			t.Errorf("key has %d characters, want at least %d", len(key), MinSecretKeyLen)
		}
		fi, err := os.Stat(filepath.Join(dir, SecretKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("secret.key mode = %v, want 0600", perm)
		}
		again, err := LoadOrCreateSecretKey(dir)
		if err != nil {
			t.Fatal(err)
		}
		if again != key {
			t.Error("second call returned a different key")
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Errorf("data dir holds %d entries, want only secret.key", len(entries))
		}
	})
	t.Run("concurrent first starts agree", func(t *testing.T) {
		dir := t.TempDir()
		keys := make([]string, 8)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() {
				k, err := LoadOrCreateSecretKey(dir)
				if err != nil {
					t.Error(err)
				}
				keys[i] = k
			})
		}
		wg.Wait()
		for _, k := range keys[1:] {
			if k != keys[0] {
				t.Fatalf("keys differ: %q vs %q", k, keys[0])
			}
		}
	})
	t.Run("existing key is kept", func(t *testing.T) {
		dir := t.TempDir()
		const want = "an-operator-provided-key-of-40-characters"
		if err := os.WriteFile(filepath.Join(dir, SecretKeyFile), []byte(want+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := LoadOrCreateSecretKey(dir)
		if err != nil || got != want {
			t.Errorf("LoadOrCreateSecretKey = %q, %v; want %q", got, err, want)
		}
	})
	t.Run("short key is an error, not overwritten", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, SecretKeyFile)
		if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateSecretKey(dir); err == nil {
			t.Fatal("want an error for a short key file")
		}
		b, _ := os.ReadFile(path)
		if string(b) != "short\n" {
			t.Errorf("key file rewritten to %q", b)
		}
	})
}

func TestValidateRawRetention(t *testing.T) {
	c := Config{RawRetention: 30 * time.Minute}
	err := c.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || !strings.HasPrefix(ve.Problems[0], "PARTNERHUB_RAW_RETENTION: must be at least 1h") {
		t.Fatalf("Validate with a 30m retention = %v, want one PARTNERHUB_RAW_RETENTION problem", err)
	}
}

// TestRetryScheduleInvalid: a retry schedule that would not start at once,
// has no attempt, a negative or week-long delay, or a bad item is refused
// by name.
func TestRetryScheduleInvalid(t *testing.T) {
	for _, v := range []string{"5s,1m", ",", "0,-1s", "0,200h", "0,soon", "0" + strings.Repeat(",1s", 20)} {
		_, err := Load("", func(k string) string {
			if k == "PARTNERHUB_RETRY_SCHEDULE" {
				return v
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), "PARTNERHUB_RETRY_SCHEDULE") {
			t.Errorf("PARTNERHUB_RETRY_SCHEDULE=%q: error %v, want one naming the variable", v, err)
		}
	}
}
