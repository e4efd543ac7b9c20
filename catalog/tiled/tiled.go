// Package tiled reads Bluesky runs that a tiled server serves (databroker 2.x's MongoAdapter
// behind tiled's HTTP API): the network record store a lab shares while each workstation
// mounts it.
//
// You are in a concrete backend: package catalog defines what it returns, cmd/brokerfs wires
// it (SOURCE http(s)://HOST[:PORT]/api/v1[/PATH]). Requests per operation (tests pin them):
//
//   - Runs: GET /search/PATH?fields=metadata, pages of Options.PageLimit (≤ 300) runs, the
//     pages after the first fetched in parallel: 1,000 runs cost 4 requests.
//   - Run: GET /metadata/PATH/UID (start and stop).
//   - Descriptors, EventPages, Resources, Datums, Documents: GET /documents/PATH/UID once per
//     run (newline-delimited JSON documents, as stored, external fields as datum ids).
//   - ArrayReader, for external fields and fields of big rows: GET /metadata/... of the field
//     once (dtype, shape), then /array/full/...?slice=FROM:TO as octet-stream, split into
//     parallel requests (one per request slot, each at most Options.ArrayRequestBytes): a frame costs one request of
//     about a frame's bytes. The server fills external data itself (no root_map, no files).
//
// Every response is untrusted: bodies are bounded before and after decoding (gzip, zstd, lz4
// blocks and blosc1 chunks are decoded here), array bodies must have exactly the size their
// shape says, and errors name the URL and the status. The API key travels only in the
// Authorization header (never in a URL, a log line, an error or String). 401 and 403 fail at
// once with ErrUnauthorized; connection errors and 5xx are retried with backoff on a fresh
// connection; every request is bounded by Options.Timeout; at most Options.MaxRequests are in
// flight. JSON metadata is re-validated with If-None-Match.
package tiled

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
)

// Options configure a Catalog. Zero values take the defaults.
type Options struct {
	APIKey      string        // sent as "Authorization: Apikey KEY"
	Timeout     time.Duration // bounds every request, body included (default 10s)
	MaxRequests int           // requests in flight, and pooled connections (default 8)
	Retries     int           // retries after a connection error or 5xx (default 3; <0 none)
	Backoff     time.Duration // first retry's wait, doubled each time (default 100ms)
	PageLimit   int           // runs per /search page, ≤ 300 (default 300)

	// ArrayRequestBytes bounds one array request; a long read is cut into one piece per
	// request slot, each at most this big, sent in parallel (default 16 MiB).
	ArrayRequestBytes int64
	// WholeArrayBytes: arrays up to this size are fetched whole on their first read and kept
	// with the run, so that a reader going row by row costs one request (default 1 MiB;
	// negative: never).
	WholeArrayBytes int64
	// BigRowBytes: non-external fields whose rows are at least this big are served through
	// ArrayReader rather than events (default 64 KiB).
	BigRowBytes int64
	// MaxDocumentsBytes bounds one run's documents (default 512 MiB); MaxJSONBytes any other
	// JSON response (default 64 MiB).
	MaxDocumentsBytes int64
	MaxJSONBytes      int64

	// KeepExternal reports external data keys, resources and datums as stored. By default
	// the server fills external fields (ArrayReader), so runs show them as plain fields and
	// have no resources: nothing of them is read from this machine's files. Documents (what
	// brokerfs copy writes) are always as stored.
	KeepExternal bool

	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = 8
	}
	if o.Retries == 0 {
		o.Retries = 3
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.Backoff <= 0 {
		o.Backoff = 100 * time.Millisecond
	}
	if o.PageLimit <= 0 || o.PageLimit > maxPageLimit {
		o.PageLimit = maxPageLimit
	}
	if o.ArrayRequestBytes <= 0 {
		o.ArrayRequestBytes = 16 << 20
	}
	if o.WholeArrayBytes == 0 {
		o.WholeArrayBytes = 1 << 20
	}
	if o.BigRowBytes <= 0 {
		o.BigRowBytes = 64 << 10
	}
	if o.MaxDocumentsBytes <= 0 {
		o.MaxDocumentsBytes = 512 << 20
	}
	if o.MaxJSONBytes <= 0 {
		o.MaxJSONBytes = 64 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// maxPageLimit is tiled's MAX_PAGE_SIZE: a larger page[limit] is a 422.
const maxPageLimit = 300

// Catalog is the container of runs at a tiled URL. It is safe for concurrent use.
type Catalog struct {
	c    *client
	path []string // the container's path under /api/v1
	name string   // the URL, for messages
	opts Options

	// While the server is unreachable the last listing is served, and runs in it open from
	// it (their data reads fail until the server is back). One log line per outage.
	mu       sync.Mutex // guards last and down
	last     map[string]runMeta
	lastList []*catalog.Start
	down     bool
}

var (
	_ catalog.Catalog      = (*Catalog)(nil)
	_ catalog.RunVersioner = (*Catalog)(nil)
)

// RunVersion is the key Run(uid).Version gives, from the last listing when the run is in it
// (no request: a run's stop and event counts come with the listing), else from the run's
// metadata (one request).
func (c *Catalog) RunVersion(ctx context.Context, uid string) (string, error) {
	c.mu.Lock()
	m, ok := c.last[uid]
	c.mu.Unlock()
	if ok {
		return c.versionKey(uid, m.stop), nil
	}
	r, err := c.Run(ctx, uid)
	if err != nil {
		return "", err
	}
	return r.(*run).Version(ctx)
}

// IsURL reports whether a SOURCE argument names a tiled server.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// ParseURL splits a SOURCE http(s)://HOST[:PORT][/PREFIX]/api/v1[/PATH] into the API's base
// URL and the container path. It refuses credentials in the URL (user:password@ or
// ?api_key=): they would show in /proc/mounts and in logs.
func ParseURL(raw string) (base *url.URL, path []string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("tiled URL: %w", stripURLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, nil, fmt.Errorf("tiled URL %s: want http(s)://HOST[:PORT]/api/v1[/PATH]", u.Redacted())
	}
	if u.User != nil {
		return nil, nil, errors.New("tiled URL: credentials in the URL are refused (they would show in /proc/mounts); set TILED_API_KEY or pass --api-key-file")
	}
	if u.Query().Has("api_key") {
		return nil, nil, errors.New("tiled URL: an api_key in the URL is refused (it would show in /proc/mounts); set TILED_API_KEY or pass --api-key-file")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, nil, fmt.Errorf("tiled URL %s: no query or fragment, please", u.Redacted())
	}
	i := strings.Index(u.Path+"/", "/api/v1/")
	if i < 0 {
		return nil, nil, fmt.Errorf("tiled URL %s: the path must hold /api/v1 (as tiled's from_uri takes)", u.Redacted())
	}
	base = &url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path[:i+len("/api/v1")]}
	for _, seg := range strings.Split(u.Path[i+len("/api/v1"):], "/") {
		if seg != "" {
			path = append(path, seg)
		}
	}
	return base, path, nil
}

// Open checks the server and the container at rawURL: one request for the container's
// metadata, which proves the server reachable and the key accepted (401 and 403 fail here
// with a message saying how to pass a key).
func Open(ctx context.Context, rawURL string, opts Options) (*Catalog, error) {
	opts = opts.withDefaults()
	base, path, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	c := &Catalog{c: newClient(base, opts), path: path, opts: opts}
	c.name = base.String() + "/" + strings.Join(escapeAll(path), "/")
	c.name = strings.TrimSuffix(c.name, "/")
	v, err := c.c.getJSON(ctx, c.c.route("metadata", path, nil), opts.MaxJSONBytes)
	if err != nil {
		return nil, c.explain(err)
	}
	if fam := str(dig(v, "data", "attributes", "structure_family")); fam != "" && fam != "container" {
		return nil, fmt.Errorf("tiled %s: a %s, not a container of runs", c.name, fam)
	}
	return c, nil
}

func escapeAll(p []string) []string {
	out := make([]string, len(p))
	for i, s := range p {
		out[i] = url.PathEscape(s)
	}
	return out
}

// explain turns a refusal for want of a key into a message saying how to pass one.
func (c *Catalog) explain(err error) error {
	if !errors.Is(err, ErrUnauthorized) {
		return err
	}
	if c.opts.APIKey == "" {
		return fmt.Errorf("%w (the server wants an API key: set TILED_API_KEY or pass --api-key-file FILE)", err)
	}
	return fmt.Errorf("%w (the server refused the API key from TILED_API_KEY or --api-key-file: check it)", err)
}

// String returns the catalog's URL, which holds no secret.
func (c *Catalog) String() string { return c.name }

// Requests returns how many HTTP requests the catalog has sent (retries included).
func (c *Catalog) Requests() int { return c.c.Requests() }

// Close releases idle connections.
func (c *Catalog) Close() error {
	c.c.http.CloseIdleConnections()
	return nil
}

// Runs lists the container's runs through /search, fields=metadata: start, stop and summary
// of each run in one page of up to PageLimit runs; the pages after the first go in parallel.
func (c *Catalog) Runs(ctx context.Context) ([]*catalog.Start, error) {
	starts, stops, err := c.search(ctx, nil)
	if err != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.lastList == nil || !c.outage(ctx, err) {
			return nil, err
		}
		return c.lastList, nil
	}
	last := make(map[string]runMeta, len(starts))
	for _, s := range starts {
		last[s.UID] = runMeta{start: s, stop: stops[s.UID]}
	}
	c.mu.Lock()
	c.last, c.lastList = last, starts
	c.back()
	c.mu.Unlock()
	return starts, nil
}

// outage reports whether err means the server is unreachable (connection errors, timeouts,
// 5xx) rather than an answer, and logs the first one of an outage. Called with mu held.
func (c *Catalog) outage(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, ErrUnauthorized) || errors.Is(err, catalog.ErrNotFound) {
		return false
	}
	var he *HTTPError
	if errors.As(err, &he) && he.Status < 500 {
		return false
	}
	var de *catalog.DocError
	if errors.As(err, &de) {
		return false
	}
	if !c.down {
		c.down = true
		c.opts.Logger.Warn("tiled: server unreachable; serving the last listing, other reads fail until it is back", "url", c.name, "err", err)
	}
	return true
}

// back logs the end of an outage. Called with mu held.
func (c *Catalog) back() {
	if c.down {
		c.down = false
		c.opts.Logger.Info("tiled: server reachable again", "url", c.name)
	}
}

// search lists the runs that filters select.
func (c *Catalog) search(ctx context.Context, filters url.Values) ([]*catalog.Start, map[string]*catalog.Stop, error) {
	page := func(offset int) url.Values {
		q := url.Values{"fields": {"metadata"}}
		for k, v := range filters {
			q[k] = v
		}
		q.Set("page[offset]", itoa(offset))
		q.Set("page[limit]", itoa(c.opts.PageLimit))
		return q
	}
	first, count, err := c.searchPage(ctx, page(0))
	if err != nil {
		return nil, nil, c.explain(err)
	}
	pages := [][]runMeta{first}
	if count > len(first) && len(first) > 0 {
		n := (count - 1) / c.opts.PageLimit // further pages
		if n > 1<<20/c.opts.PageLimit+1 {
			return nil, nil, fmt.Errorf("tiled %s: implausible count of runs %d", c.name, count)
		}
		pages = append(pages, make([][]runMeta, n)...)
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := 1; i <= n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				pages[i], _, errs[i-1] = c.searchPage(ctx, page(i*c.opts.PageLimit))
			}(i)
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, nil, c.explain(err)
		}
	}
	var starts []*catalog.Start
	stops := map[string]*catalog.Stop{}
	seen := map[string]bool{}
	for _, p := range pages {
		for _, m := range p {
			if m.start == nil || seen[m.start.UID] {
				continue
			}
			seen[m.start.UID] = true
			starts = append(starts, m.start)
			if m.stop != nil {
				stops[m.start.UID] = m.stop
			}
		}
	}
	return starts, stops, nil
}

type runMeta struct {
	start *catalog.Start
	stop  *catalog.Stop
}

// searchPage fetches one page of runs and the total count.
func (c *Catalog) searchPage(ctx context.Context, q url.Values) ([]runMeta, int, error) {
	u := c.c.route("search", c.path, q)
	v, err := c.c.getJSON(ctx, u, c.opts.MaxJSONBytes)
	if err != nil {
		return nil, 0, err
	}
	count, _ := catalog.AsInt(dig(v, "meta", "count"))
	data, _ := dig(v, "data").([]any)
	out := make([]runMeta, 0, len(data))
	for _, e := range data {
		id := str(dig(e, "id"))
		md, _ := dig(e, "attributes", "metadata").(map[string]any)
		m, err := parseRunMeta(md)
		if err != nil {
			// A run the server cannot describe is left out, as file backends leave out a run
			// whose start cannot be read.
			c.opts.Logger.Warn("tiled: run left out of the listing", "url", u, "run", id, "err", err)
			continue
		}
		out = append(out, m)
	}
	return out, int(count), nil
}

// parseRunMeta reads a BlueskyRun's metadata {start, stop, summary}.
func parseRunMeta(md map[string]any) (runMeta, error) {
	var m runMeta
	sd, ok := md["start"].(map[string]any)
	if !ok {
		return m, errors.New("metadata has no start document")
	}
	var err error
	if m.start, err = catalog.ParseStart(sd, catalog.AppendJSON(nil, sd)); err != nil {
		return m, fmt.Errorf("start: %w", err)
	}
	if sp, ok := md["stop"].(map[string]any); ok {
		if m.stop, err = catalog.ParseStop(sp, catalog.AppendJSON(nil, sp)); err != nil {
			return m, fmt.Errorf("stop: %w", err)
		}
	}
	return m, nil
}

// Run opens the run uid with one request for its metadata; its documents are fetched when
// first needed.
func (c *Catalog) Run(ctx context.Context, uid string) (catalog.Run, error) {
	if uid == "" || strings.ContainsAny(uid, "/?#") {
		return nil, fmt.Errorf("run %q: %w", uid, catalog.ErrNotFound)
	}
	u := c.c.route("metadata", append(c.path[:len(c.path):len(c.path)], uid), nil)
	v, err := c.c.getJSON(ctx, u, c.opts.MaxJSONBytes)
	if err != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		if m, ok := c.last[uid]; ok && c.outage(ctx, err) {
			return &run{cat: c, uid: uid, start: m.start, stop: m.stop}, nil
		}
		return nil, c.explain(fmt.Errorf("run %s: %w", uid, err))
	}
	c.mu.Lock()
	c.back()
	c.mu.Unlock()
	md, _ := dig(v, "data", "attributes", "metadata").(map[string]any)
	m, err := parseRunMeta(md)
	if err != nil {
		return nil, &catalog.DocError{Source: u, Name: "start", Err: err}
	}
	if m.start.UID != uid {
		return nil, fmt.Errorf("run %s: the server answered with run %s: %w", uid, m.start.UID, catalog.ErrNotFound)
	}
	return &run{cat: c, uid: uid, start: m.start, stop: m.stop}, nil
}

// dig walks nested maps.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func sortedStrings(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
