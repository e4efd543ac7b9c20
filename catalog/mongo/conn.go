package mongo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
)

// Options tune a Catalog. The zero value is usable.
type Options struct {
	// Logger receives skipped documents and one line per server outage and recovery
	// (default: slog.Default()).
	Logger *slog.Logger

	// Timeout bounds server selection and every round trip (a find, each getMore) whose
	// context has no deadline of its own (default 10s). Options given in the URI
	// (serverSelectionTimeoutMS, timeoutMS, ...) win over it.
	Timeout time.Duration

	// PageSize is the number of documents fetched per round trip, and so the number of rows
	// of an EventPage or DatumPage (default 2500, databroker's page size).
	PageSize int

	// Monitor, when set, sees every command the catalog sends: tests and benchmarks count
	// round trips with it.
	Monitor *event.CommandMonitor
}

// DefaultTimeout and DefaultPageSize are the values Options falls back to.
const (
	DefaultTimeout  = 10 * time.Second
	DefaultPageSize = 2500
)

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	return o
}

// oneShot are the options of the functions that connect for one task (InstallSentinel,
// InsertRun, ...): their errors say what failed, so outages are not logged.
var oneShot = Options{Logger: slog.New(slog.DiscardHandler)}

// conn is a client connected to one database named by a URI.
type conn struct {
	client *mongo.Client
	db     *mongo.Database
	name   string // the URI, redacted: for messages
}

// connect opens a client for uri and selects the database named in its path. Connecting is
// lazy: an unreachable server shows up as an error on the first operation. Errors never
// contain the URI's credentials.
func connect(uri string, opts Options) (*conn, error) {
	opts = opts.withDefaults()
	name := Redact(uri)
	cs, err := connstring.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, scrub(err, uri))
	}
	if cs.Database == "" {
		return nil, fmt.Errorf("open %s: the URI names no database (mongodb://HOST/DATABASE)", name)
	}
	co := options.Client().
		SetServerSelectionTimeout(opts.Timeout).
		SetConnectTimeout(opts.Timeout).
		SetTimeout(opts.Timeout).
		SetServerMonitor(outageLogger(opts.Logger, name)).
		ApplyURI(uri)
	if opts.Monitor != nil {
		co.SetMonitor(opts.Monitor)
	}
	client, err := mongo.Connect(co)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", name, scrub(err, uri))
	}
	return &conn{client: client, db: client.Database(cs.Database), name: name}, nil
}

// sibling returns a conn for the database uri names on c's client. Use it only when
// shareable(c's URI, uri).
func (c *conn) sibling(uri string) (*conn, error) {
	cs, err := connstring.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", Redact(uri), scrub(err, uri))
	}
	if cs.Database == "" {
		return nil, fmt.Errorf("open %s: the URI names no database (mongodb://HOST/DATABASE)", Redact(uri))
	}
	return &conn{client: c.client, db: c.client.Database(cs.Database), name: Redact(uri)}, nil
}

// shareable reports whether two URIs differ in their database only, so that one client
// (one pool of connections, one outage log line) serves both. URIs with credentials but no
// authSource are not: each authenticates against its own database.
func shareable(a, b string) bool {
	ba, qa := splitDatabase(a)
	bb, qb := splitDatabase(b)
	if ba != bb || qa != qb {
		return false
	}
	return !strings.Contains(ba, "@") || strings.Contains(strings.ToLower(qa), "authsource=")
}

// splitDatabase returns a URI without its database path, and its options.
func splitDatabase(uri string) (base, query string) {
	s, query, _ := strings.Cut(uri, "?")
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	}
	hosts := start
	if at := strings.LastIndexByte(s[start:], '@'); at >= 0 {
		hosts = start + at + 1
	}
	if slash := strings.IndexByte(s[hosts:], '/'); slash >= 0 {
		s = s[:hosts+slash]
	}
	return s, query
}

// close disconnects the client, waiting at most timeout for in-flight operations.
func (c *conn) close(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.client.Disconnect(ctx); err != nil {
		return fmt.Errorf("disconnect %s: %w", c.name, err)
	}
	return nil
}

// outageLogger logs one line when a server that was up stops answering and one when it
// answers again, rather than one per failed operation.
func outageLogger(log *slog.Logger, name string) *event.ServerMonitor {
	var mu sync.Mutex
	up := map[string]bool{} // address -> last known state; guarded by mu
	return &event.ServerMonitor{
		ServerDescriptionChanged: func(e *event.ServerDescriptionChangedEvent) {
			addr := e.Address.String()
			isUp := e.NewDescription.Kind != "Unknown" && e.NewDescription.Kind != ""
			mu.Lock()
			was, seen := up[addr]
			up[addr] = isUp
			mu.Unlock()
			switch {
			case was && !isUp:
				log.Warn("mongo server unreachable", "server", addr, "catalog", name)
			case seen && !was && isUp:
				log.Info("mongo server reachable again", "server", addr, "catalog", name)
			}
		},
	}
}

// Redact returns uri with its credentials hidden: the user information before '@' and the
// values of query options that carry secrets (passwords, tokens, auth mechanism properties)
// become "xxxxx". It works on strings url.Parse refuses (several hosts, unescaped
// characters); when unsure where the user information ends, it hides more, never less.
func Redact(uri string) string {
	s, query, hasQuery := strings.Cut(uri, "?")
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		start := 0
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			start = j + 3
		}
		s = s[:start] + "xxxxx" + s[i:]
	}
	if !hasQuery {
		return s
	}
	params := strings.Split(query, "&")
	for i, p := range params {
		k, _, ok := strings.Cut(p, "=")
		if ok && secretOption(k) {
			params[i] = k + "=xxxxx"
		}
	}
	return s + "?" + strings.Join(params, "&")
}

// secretOption reports whether a URI option's value is a secret.
func secretOption(key string) bool {
	k := strings.ToLower(key)
	return strings.Contains(k, "password") || strings.Contains(k, "token") ||
		strings.Contains(k, "secret") || k == "authmechanismproperties"
}

// secrets returns the substrings of uri that must not appear in messages: the user
// information (whole, and each part) and secret option values, raw and unescaped.
func secrets(uri string) []string {
	var out []string
	add := func(s string) {
		if len(s) >= 3 { // shorter strings would blank out unrelated text
			out = append(out, s)
			if u, err := unescape(s); err == nil && u != s {
				out = append(out, u)
			}
		}
	}
	s, query, _ := strings.Cut(uri, "?")
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		start := 0
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			start = j + 3
		}
		info := s[start:i]
		add(info)
		user, pass, _ := strings.Cut(info, ":")
		add(user)
		add(pass)
	}
	for _, p := range strings.Split(query, "&") {
		if k, v, ok := strings.Cut(p, "="); ok && secretOption(k) {
			add(v)
		}
	}
	return out
}

func unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("bad escape")
		}
		var v byte
		for _, c := range []byte(s[i+1 : i+3]) {
			switch {
			case '0' <= c && c <= '9':
				v = v<<4 | (c - '0')
			case 'a' <= c && c <= 'f':
				v = v<<4 | (c - 'a' + 10)
			case 'A' <= c && c <= 'F':
				v = v<<4 | (c - 'A' + 10)
			default:
				return "", errors.New("bad escape")
			}
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), nil
}

// scrubbedError is an error whose message has had a URI's secrets removed. It unwraps to
// the original, so errors.Is still sees context.DeadlineExceeded and the driver's errors.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrub hides the secrets of the given URIs in err's message.
func scrub(err error, uris ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	changed := false
	for _, uri := range uris {
		for _, s := range secrets(uri) {
			if strings.Contains(msg, s) {
				msg = strings.ReplaceAll(msg, s, "xxxxx")
				changed = true
			}
		}
	}
	if !changed {
		return err
	}
	return &scrubbedError{msg: msg, err: err}
}
