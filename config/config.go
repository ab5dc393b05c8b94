// Package config owns partnerhub's settings: their defaults, loading them
// from an optional YAML file and the environment (which wins), and
// validating them so that every problem is reported at once.
package config

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults applied to zero fields.
const (
	DefaultAddr              = ":8080"
	DefaultDataDir           = "./data"
	DefaultMaxBodyBytes      = 1 << 20 // 1 MiB
	DefaultShutdownTimeout   = 15 * time.Second
	DefaultLogLevel          = "info"
	DefaultSweepInterval     = 30 * time.Second
	DefaultReconcileInterval = 5 * time.Minute
	DefaultRawRetention      = 90 * 24 * time.Hour
	DefaultQueueName         = "partnerhub"
	// DefaultQueuePollInterval is how often an idle worker asks Redis for
	// tasks. A process that ingests and works makes its events' first
	// delivery attempts itself, so a longer interval would save idle CPU
	// on a light load; under a heavy load the queued overflow waits for
	// it, and over a million sales at 1,500/s every interval of 50ms or
	// more gave a longer latency tail.
	DefaultQueuePollInterval = 10 * time.Millisecond

	// MinAdminKeyLen and MinSecretKeyLen bound keys set by the operator.
	MinAdminKeyLen  = 24
	MinSecretKeyLen = 32
)

// Roles a process can take; see Config.Roles.
const (
	RoleAPI    = "api"
	RoleIngest = "ingest"
	RoleWorker = "worker"
)

// AllRoles is the default role set, in canonical order.
var AllRoles = []string{RoleAPI, RoleIngest, RoleWorker}

var queueNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

var logLevels = []string{"debug", "info", "warn", "error"}

// Config is partnerhub's runtime configuration. Every field documents its
// environment variable and the meaning of its zero value; Load and
// Validate replace zero values with those defaults.
type Config struct {
	// Addr is the listen address (PARTNERHUB_ADDR). Zero means ":8080".
	Addr string
	// PublicURL is the absolute http(s) base of the URLs shown to merchants
	// and partners, without query or trailing slash (PARTNERHUB_PUBLIC_URL).
	// Zero means "http://localhost" plus the port of Addr.
	PublicURL string
	// DataDir holds the SQLite database and the generated secret key
	// (PARTNERHUB_DATA_DIR). Zero means "./data".
	DataDir string
	// AdminKey is the bootstrap admin API key (PARTNERHUB_ADMIN_KEY). Zero
	// means one is generated and printed once; when set it must be at least
	// 24 characters.
	AdminKey string
	// SecretKey encrypts secrets at rest (PARTNERHUB_SECRET_KEY). Zero means
	// the key in DataDir/secret.key, generated on first start (see
	// LoadOrCreateSecretKey); when set it must be at least 32 characters.
	SecretKey string
	// OutboundAllowNets are networks exempt from the SSRF guard, such as
	// 127.0.0.0/8 for local receivers (PARTNERHUB_OUTBOUND_ALLOW_NETS,
	// comma-separated CIDRs). Zero means none.
	OutboundAllowNets []netip.Prefix
	// DatabaseURL is a postgres:// or postgresql:// URL (DATABASE_URL). Zero
	// means the embedded SQLite database in DataDir.
	DatabaseURL string
	// RedisURL is a redis:// or rediss:// URL for the queue (REDIS_URL).
	// Zero means an in-process miniredis.
	RedisURL string
	// MaxBodyBytes caps inbound request bodies (PARTNERHUB_MAX_BODY_BYTES).
	// Zero means 1 MiB.
	MaxBodyBytes int64
	// ShutdownTimeout bounds a graceful shutdown (PARTNERHUB_SHUTDOWN_TIMEOUT,
	// a Go duration such as "30s"). Zero means 15s.
	ShutdownTimeout time.Duration
	// LogLevel is one of debug, info, warn, error (PARTNERHUB_LOG_LEVEL).
	// Zero means "info".
	LogLevel string
	// SweepInterval is how often the sweeper looks for inbound events and
	// deliveries that are due but not queued (after a Redis flush or a
	// crash), and how long a row may wait before it counts as such
	// (PARTNERHUB_SWEEP_INTERVAL, a Go duration). Zero means 30s.
	SweepInterval time.Duration
	// ReconcileInterval is how often sources with REST credentials are
	// polled for changes their webhooks missed
	// (PARTNERHUB_RECONCILE_INTERVAL, a Go duration). Zero means 5m.
	ReconcileInterval time.Duration
	// RawRetention is how long the raw bodies and headers of inbound
	// webhooks are kept before the hub:retention job erases them; their
	// metadata and the conversions they produced stay
	// (PARTNERHUB_RAW_RETENTION, a Go duration such as 720h or a number of
	// days such as 90d; at least 1h). Zero means 90 days.
	RawRetention time.Duration
	// RetrySchedule is the delay before each delivery attempt: the first
	// goes out at once (0), then one attempt after each further delay
	// (PARTNERHUB_RETRY_SCHEDULE, comma-separated Go durations, such as
	// "0,5s,5m,30m,2h,5h,10h,10h"). Nil means that default.
	RetrySchedule []time.Duration
	// QueueName is the asynq queue this deployment uses, so several
	// deployments can share one Redis (PARTNERHUB_QUEUE). Zero means
	// "partnerhub".
	QueueName string
	// QueuePollInterval is how often an idle worker asks Redis for tasks
	// (PARTNERHUB_QUEUE_POLL_INTERVAL, a Go duration from 1ms to 10s): an
	// idle worker sleeps 0.5 to 1.5 times it between two asks, and due
	// scheduled tasks are moved to the queue at least every 50ms or every
	// QueuePollInterval, whichever is longer. Zero means
	// DefaultQueuePollInterval.
	QueuePollInterval time.Duration
	// Roles are the parts this process runs, a subset of api, ingest and
	// worker (PARTNERHUB_ROLES, comma-separated). Zero means all three.
	Roles []string
}

// ValidationError lists every configuration problem, each as
// "NAME: problem" where NAME is the environment variable of the setting.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

// Embedded reports whether partnerhub runs on its embedded stores: SQLite
// and an in-process miniredis (neither DATABASE_URL nor REDIS_URL set).
func (c *Config) Embedded() bool {
	return c.DatabaseURL == "" && c.RedisURL == ""
}

// HasRole reports whether this process takes role r. A zero Roles means
// every role.
func (c *Config) HasRole(r string) bool {
	if len(c.Roles) == 0 {
		return slices.Contains(AllRoles, r)
	}
	return slices.Contains(c.Roles, r)
}

// setting is one configuration value: its environment variable, its YAML
// key and how a raw string is parsed into a Config. Parse errors quote the
// value, so settings that may hold secrets only assign it and leave the
// checks to Validate, whose messages never show them.
type setting struct {
	env, key string
	list     bool // YAML may give a list, read as comma-separated
	parse    func(c *Config, v string) error
}

var settings = []setting{
	{env: "PARTNERHUB_ADDR", key: "addr", parse: func(c *Config, v string) error { c.Addr = v; return nil }},
	{env: "PARTNERHUB_PUBLIC_URL", key: "public_url", parse: func(c *Config, v string) error { c.PublicURL = v; return nil }},
	{env: "PARTNERHUB_DATA_DIR", key: "data_dir", parse: func(c *Config, v string) error { c.DataDir = v; return nil }},
	{env: "PARTNERHUB_ADMIN_KEY", key: "admin_key", parse: func(c *Config, v string) error { c.AdminKey = v; return nil }},
	{env: "PARTNERHUB_SECRET_KEY", key: "secret_key", parse: func(c *Config, v string) error { c.SecretKey = v; return nil }},
	{env: "PARTNERHUB_OUTBOUND_ALLOW_NETS", key: "outbound_allow_nets", list: true, parse: parseNets},
	{env: "DATABASE_URL", key: "database_url", parse: func(c *Config, v string) error { c.DatabaseURL = v; return nil }},
	{env: "REDIS_URL", key: "redis_url", parse: func(c *Config, v string) error { c.RedisURL = v; return nil }},
	{env: "PARTNERHUB_MAX_BODY_BYTES", key: "max_body_bytes", parse: parseMaxBody},
	{env: "PARTNERHUB_SHUTDOWN_TIMEOUT", key: "shutdown_timeout", parse: parseShutdown},
	{env: "PARTNERHUB_LOG_LEVEL", key: "log_level", parse: func(c *Config, v string) error { c.LogLevel = strings.ToLower(v); return nil }},
	{env: "PARTNERHUB_SWEEP_INTERVAL", key: "sweep_interval", parse: parseSweep},
	{env: "PARTNERHUB_RECONCILE_INTERVAL", key: "reconcile_interval", parse: parseReconcile},
	{env: "PARTNERHUB_RAW_RETENTION", key: "raw_retention", parse: parseRawRetention},
	{env: "PARTNERHUB_RETRY_SCHEDULE", key: "retry_schedule", list: true, parse: parseRetrySchedule},
	{env: "PARTNERHUB_QUEUE", key: "queue", parse: func(c *Config, v string) error { c.QueueName = v; return nil }},
	{env: "PARTNERHUB_QUEUE_POLL_INTERVAL", key: "queue_poll_interval", parse: parseQueuePoll},
	{env: "PARTNERHUB_ROLES", key: "roles", list: true, parse: parseRoles},
}

// Load builds a Config from the defaults, then the YAML file at path (if
// path is not empty; keys are the snake_case field names), then the
// environment as read by getenv, which overrides the file. An empty
// environment variable counts as unset. Invalid values and unknown YAML
// keys are reported together in one *ValidationError.
func Load(path string, getenv func(string) string) (*Config, error) {
	raw := make(map[string]string)    // env name → value
	origin := make(map[string]string) // env name → where a file value came from
	var problems []string
	if path != "" {
		fileVals, fileProblems, err := readFile(path)
		if err != nil {
			return nil, err
		}
		problems = append(problems, fileProblems...)
		for _, s := range settings {
			if v, ok := fileVals[s.key]; ok {
				raw[s.env] = v
				origin[s.env] = fmt.Sprintf(" (set as %s in %s)", s.key, path)
			}
		}
	}
	if getenv != nil {
		for _, s := range settings {
			if v := strings.TrimSpace(getenv(s.env)); v != "" {
				raw[s.env] = v
				delete(origin, s.env)
			}
		}
	}

	c := &Config{}
	for _, s := range settings {
		v, ok := raw[s.env]
		if !ok || v == "" {
			continue
		}
		if err := s.parse(c, v); err != nil {
			problems = append(problems, s.env+": "+err.Error()+origin[s.env])
		}
	}
	if err := c.Validate(); err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return nil, err
		}
		for _, p := range ve.Problems {
			env, _, _ := strings.Cut(p, ":")
			problems = append(problems, p+origin[env])
		}
	}
	if len(problems) > 0 {
		// File-level problems first, then settings in their documented order.
		slices.SortStableFunc(problems, func(a, b string) int { return rank(a) - rank(b) })
		return nil, &ValidationError{Problems: problems}
	}
	return c, nil
}

func rank(problem string) int {
	name, _, _ := strings.Cut(problem, ":")
	return slices.IndexFunc(settings, func(s setting) bool { return s.env == name })
}

// readFile reads the YAML file at path into raw values keyed by YAML key.
// Unknown, duplicate and non-scalar keys are returned as problems; an
// unreadable or malformed file is an error.
func readFile(path string) (map[string]string, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // empty file
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("parsing config file %s: %w", path, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("parsing config file %s: top level must be a mapping of settings", path)
	}
	known := make(map[string]setting, len(settings))
	for _, s := range settings {
		known[s.key] = s
	}
	vals := make(map[string]string)
	seen := make(map[string]bool)
	var problems []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		where := fmt.Sprintf("%s line %d", path, k.Line)
		s, ok := known[k.Value]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: unknown key %q", where, k.Value))
			continue
		case seen[k.Value]:
			problems = append(problems, fmt.Sprintf("%s: duplicate key %q", where, k.Value))
			continue
		}
		seen[k.Value] = true
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			// key: (nothing) leaves the default
		case v.Kind == yaml.ScalarNode:
			vals[k.Value] = strings.TrimSpace(v.Value)
		case v.Kind == yaml.SequenceNode && s.list:
			items := make([]string, 0, len(v.Content))
			for _, item := range v.Content {
				if item.Kind == yaml.ScalarNode {
					items = append(items, strings.TrimSpace(item.Value))
				}
			}
			if len(items) != len(v.Content) {
				problems = append(problems, fmt.Sprintf("%s: %s in %s must list plain values", s.env, k.Value, where))
				continue
			}
			vals[k.Value] = strings.Join(items, ",")
		default:
			want := "a single value"
			if s.list {
				want = "a list or a comma-separated string"
			}
			problems = append(problems, fmt.Sprintf("%s: %s in %s must be %s", s.env, k.Value, where, want))
		}
	}
	return vals, problems, nil
}

// Validate replaces zero fields with their defaults, normalizes values
// (trailing slash of PublicURL, masked prefixes, role order) and checks
// them. It returns a *ValidationError listing every problem.
func (c *Config) Validate() error {
	c.setDefaults()
	var p problemList
	_, port, err := net.SplitHostPort(c.Addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	switch {
	case err != nil:
		p.add("PARTNERHUB_ADDR", "must be host:port or :port with a numeric port: %q", c.Addr)
	case c.PublicURL == "":
		c.PublicURL = "http://localhost:" + port
	}
	if c.PublicURL != "" {
		if msg := checkPublicURL(c.PublicURL); msg != "" {
			p.add("PARTNERHUB_PUBLIC_URL", "%s: %q", msg, c.PublicURL)
		} else {
			c.PublicURL = strings.TrimRight(c.PublicURL, "/")
		}
	}
	if c.AdminKey != "" && len(c.AdminKey) < MinAdminKeyLen {
		p.add("PARTNERHUB_ADMIN_KEY", "must be at least %d characters (leave unset to generate one)", MinAdminKeyLen)
	}
	if c.SecretKey != "" && len(c.SecretKey) < MinSecretKeyLen {
		p.add("PARTNERHUB_SECRET_KEY", "must be at least %d characters (leave unset to generate one)", MinSecretKeyLen)
	}
	for i, n := range c.OutboundAllowNets {
		if !n.IsValid() {
			p.add("PARTNERHUB_OUTBOUND_ALLOW_NETS", "invalid prefix at position %d", i+1)
			continue
		}
		c.OutboundAllowNets[i] = n.Masked()
	}
	if c.DatabaseURL != "" {
		if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			p.add("DATABASE_URL", "must be a postgres:// or postgresql:// URL (leave unset for embedded SQLite)")
		}
	}
	if c.RedisURL != "" {
		if msg := checkRedisURL(c.RedisURL); msg != "" {
			p.add("REDIS_URL", "%s (leave unset for the in-process queue)", msg)
		}
	}
	if c.MaxBodyBytes < 0 {
		p.add("PARTNERHUB_MAX_BODY_BYTES", "must be positive: %d", c.MaxBodyBytes)
	}
	if c.ShutdownTimeout < 0 {
		p.add("PARTNERHUB_SHUTDOWN_TIMEOUT", "must be positive: %s", c.ShutdownTimeout)
	}
	if c.RawRetention < time.Hour {
		p.add("PARTNERHUB_RAW_RETENTION", "must be at least 1h: %s", c.RawRetention)
	}
	if !queueNameRE.MatchString(c.QueueName) {
		p.add("PARTNERHUB_QUEUE", "must be 1-64 letters, digits, '_', '-' or '.': %q", c.QueueName)
	}
	if !slices.Contains(logLevels, c.LogLevel) {
		p.add("PARTNERHUB_LOG_LEVEL", "must be one of %s: %q", strings.Join(logLevels, ", "), c.LogLevel)
	}
	roles := make([]string, 0, len(AllRoles))
	for _, r := range c.Roles {
		if !slices.Contains(AllRoles, r) {
			p.add("PARTNERHUB_ROLES", "unknown role %q (want a subset of %s)", r, strings.Join(AllRoles, ", "))
		}
	}
	for _, r := range AllRoles { // canonical order, no duplicates
		if slices.Contains(c.Roles, r) {
			roles = append(roles, r)
		}
	}
	c.Roles = roles
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = DefaultReconcileInterval
	}
	if c.RawRetention == 0 {
		c.RawRetention = DefaultRawRetention
	}
	if c.QueueName == "" {
		c.QueueName = DefaultQueueName
	}
	if len(c.Roles) == 0 {
		c.Roles = slices.Clone(AllRoles)
	}
	if c.QueuePollInterval == 0 {
		c.QueuePollInterval = DefaultQueuePollInterval
	}
}

type problemList []string

func (p *problemList) add(env, format string, args ...any) {
	*p = append(*p, env+": "+fmt.Sprintf(format, args...))
}

func checkPublicURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "not a valid URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an absolute http:// or https:// URL"
	case u.Host == "" || u.Hostname() == "":
		return "must include a host"
	case u.User != nil:
		return "must not include credentials"
	case u.RawQuery != "" || u.ForceQuery:
		return "must not include a query"
	case u.Fragment != "" || strings.Contains(s, "#"):
		return "must not include a fragment"
	}
	return ""
}

// checkRedisURL accepts what go-redis's ParseURL accepts for redis:// and
// rediss://: a host, an optional numeric port and an optional /db number.
// Messages never include the URL, which may hold a password.
func checkRedisURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "not a valid URL"
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return "must be a redis:// or rediss:// URL"
	}
	if u.Port() != "" {
		if _, err := strconv.ParseUint(u.Port(), 10, 16); err != nil {
			return "port must be a number from 0 to 65535"
		}
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return "path must be a database number such as /0"
		}
	}
	return ""
}

func parseNets(c *Config, v string) error {
	var nets []netip.Prefix
	var bad []string
	for _, s := range splitList(v) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			bad = append(bad, strconv.Quote(s))
			continue
		}
		nets = append(nets, p.Masked())
	}
	if len(bad) > 0 {
		return fmt.Errorf("not a CIDR such as 127.0.0.0/8: %s", strings.Join(bad, ", "))
	}
	c.OutboundAllowNets = nets
	return nil
}

func parseMaxBody(c *Config, v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("must be a positive number of bytes: %q", v)
	}
	c.MaxBodyBytes = n
	return nil
}

func parseShutdown(c *Config, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("must be a positive Go duration such as 15s: %q", v)
	}
	c.ShutdownTimeout = d
	return nil
}

func parseSweep(c *Config, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < 100*time.Millisecond {
		return fmt.Errorf("must be a Go duration of at least 100ms such as 30s: %q", v)
	}
	c.SweepInterval = d
	return nil
}

func parseQueuePoll(c *Config, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Millisecond || d > 10*time.Second {
		return fmt.Errorf("must be a Go duration from 1ms to 10s such as 200ms: %q", v)
	}
	c.QueuePollInterval = d
	return nil
}

func parseReconcile(c *Config, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		return fmt.Errorf("must be a Go duration of at least 1s such as 5m: %q", v)
	}
	c.ReconcileInterval = d
	return nil
}

// parseRawRetention reads a Go duration or a whole number of days ("90d").
func parseRawRetention(c *Config, v string) error {
	bad := fmt.Errorf("must be a Go duration of at least 1h such as 720h, or a number of days such as 90d: %q", v)
	var d time.Duration
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 100*365 {
			return bad
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return bad
		}
	}
	if d < time.Hour {
		return bad
	}
	c.RawRetention = d
	return nil
}

// parseRetrySchedule reads the delivery retry schedule: 1 to 20 Go
// durations, the first 0 (the first attempt goes out at once), none
// negative or over a week.
func parseRetrySchedule(c *Config, v string) error {
	var out []time.Duration
	for _, s := range splitList(v) {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > 7*24*time.Hour {
			return fmt.Errorf("items must be Go durations from 0 to 168h such as 5m: %q", s)
		}
		out = append(out, d)
	}
	switch {
	case len(out) == 0 || len(out) > 20:
		return fmt.Errorf("must list 1 to 20 delays, such as 0,5s,5m,30m,2h,5h,10h,10h: %q", v)
	case out[0] != 0:
		return fmt.Errorf("must start with 0 (the first attempt goes out at once): %q", v)
	}
	c.RetrySchedule = out
	return nil
}

func parseRoles(c *Config, v string) error {
	roles := splitList(v)
	if len(roles) == 0 {
		return fmt.Errorf("must name at least one of %s: %q", strings.Join(AllRoles, ", "), v)
	}
	c.Roles = roles
	return nil
}

// splitList splits a comma-separated value, trimming spaces and dropping
// empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// SecretKeyFile is the name, inside the data directory, of the secret key
// generated when PARTNERHUB_SECRET_KEY is not set.
const SecretKeyFile = "secret.key"

// LoadOrCreateSecretKey returns the secret key stored in
// dataDir/secret.key, creating the directory (0700) and the file (0600,
// 32 random bytes in base64) on first start. The file's trimmed content is
// used exactly like PARTNERHUB_SECRET_KEY. An existing file that is empty
// or too short is an error, never overwritten: secrets already sealed with
// it would become unreadable. Concurrent first starts agree on one key.
func LoadOrCreateSecretKey(dataDir string) (string, error) {
	path := filepath.Join(dataDir, SecretKeyFile)
	key, err := readSecretKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("creating data dir: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating secret key: %w", err)
	}
	key = base64.StdEncoding.EncodeToString(b)

	// Write a temporary file, then link it into place: the link fails if
	// another process created the key first, and nobody reads a half
	// written file.
	tmp, err := os.CreateTemp(dataDir, ".secret.key-*")
	if err != nil {
		return "", fmt.Errorf("creating secret key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("creating secret key: %w", err)
	}
	if _, err := tmp.WriteString(key + "\n"); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing secret key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing secret key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("writing secret key: %w", err)
	}
	err = os.Link(tmp.Name(), path)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		// No hard links on this file system: create the file exclusively.
		err = writeExclusive(path, key)
	}
	if errors.Is(err, fs.ErrExist) {
		return readSecretKey(path) // lost the race: use the winner's key
	}
	if err != nil {
		return "", fmt.Errorf("storing secret key: %w", err)
	}
	return key, nil
}

func writeExclusive(path, key string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(key + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readSecretKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("reading secret key: %w", err)
	}
	key := strings.TrimSpace(string(b))
	if len(key) < MinSecretKeyLen {
		return "", fmt.Errorf("reading secret key: %s holds fewer than %d characters; restore it from a backup or remove it only if no secrets were stored yet", path, MinSecretKeyLen)
	}
	return key, nil
}
