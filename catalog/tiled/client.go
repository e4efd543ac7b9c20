package tiled

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
)

// ErrUnauthorized means the server refused the request for want of a (valid) API key.
var ErrUnauthorized = errors.New("unauthorized")

// HTTPError is a response with a status other than 200 (or 304 to a re-validation). It
// names the URL (never the API key, which travels in a header) and the status, and carries
// the server's own explanation, shortened. It unwraps to catalog.ErrNotFound for 404 and to
// ErrUnauthorized for 401 and 403.
type HTTPError struct {
	URL    string
	Status int
	Detail string
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("GET %s: %d %s", e.URL, e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap maps statuses to the sentinel errors callers test for.
func (e *HTTPError) Unwrap() error {
	switch e.Status {
	case http.StatusNotFound:
		return catalog.ErrNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrUnauthorized
	}
	return nil
}

// client sends GET requests to one tiled server: the API key in a header, a bounded number
// in flight, a deadline on each, retries with backoff on connection errors and 5xx, bodies
// bounded and decoded, small JSON responses re-validated with their ETag.
type client struct {
	base    *url.URL // scheme://host[:port]/prefix/api/v1, no trailing slash
	key     string   // the API key; never in a URL, log line or error
	http    *http.Client
	sem     chan struct{} // one token per request in flight
	timeout time.Duration
	retries int
	backoff time.Duration
	log     *slog.Logger

	mu       sync.Mutex // guards etags and etagSize
	etags    map[string]etagEntry
	etagSize int

	// requests counts requests sent (retries included), for tests and benchmarks.
	reqMu    sync.Mutex
	requests int
}

type etagEntry struct {
	tag  string
	body []byte
}

const (
	etagBudget  = 32 << 20 // bytes of re-validatable bodies kept
	etagMaxBody = 4 << 20  // larger bodies are not kept
)

func newClient(base *url.URL, o Options) *client {
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        o.MaxRequests,
		MaxIdleConnsPerHost: o.MaxRequests,
		MaxConnsPerHost:     o.MaxRequests,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: o.Timeout,
		DisableCompression:  true, // we offer and decode the encodings ourselves
		ForceAttemptHTTP2:   true,
	}
	return &client{
		base:    base,
		key:     o.APIKey,
		http:    &http.Client{Transport: tr, CheckRedirect: sameHostRedirect(base)},
		sem:     make(chan struct{}, o.MaxRequests),
		timeout: o.Timeout,
		retries: o.Retries,
		backoff: o.Backoff,
		log:     o.Logger,
		etags:   map[string]etagEntry{},
	}
}

// sameHostRedirect follows redirects (tiled answers /search with 307 to /search/) only on the
// same host: the API key header must not travel to another one.
func sameHostRedirect(base *url.URL) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		if req.URL.Host != base.Host || req.URL.Scheme != base.Scheme {
			return fmt.Errorf("redirect to another host %s refused", req.URL.Host)
		}
		return nil
	}
}

// Requests returns how many requests the client has sent.
func (c *client) Requests() int {
	c.reqMu.Lock()
	defer c.reqMu.Unlock()
	return c.requests
}

// route builds the URL of a route (search, metadata, documents, array/full, ...) for a
// path of node names, each escaped.
func (c *client) route(route string, path []string, q url.Values) string {
	var b strings.Builder
	b.WriteString(c.base.String())
	b.WriteString("/")
	b.WriteString(route)
	b.WriteString("/")
	for i, p := range path {
		if i > 0 {
			b.WriteString("/")
		}
		b.WriteString(url.PathEscape(p))
	}
	if len(q) > 0 {
		b.WriteString("?")
		b.WriteString(encodeQuery(q))
	}
	return b.String()
}

// encodeQuery encodes q with its keys sorted, like url.Values.Encode, but keeps the order of
// repeated values (repeated filter groups must stay grouped).
func encodeQuery(q url.Values) string { return q.Encode() }

// response is a decoded body with the headers callers look at.
type response struct {
	body        []byte
	contentType string
	etag        string
}

// get fetches u with the given Accept, decoding and bounding the body to limit bytes.
// JSON bodies are re-validated with If-None-Match when an earlier answer is kept.
func (c *client) get(ctx context.Context, u, accept string, limit int64) (*response, error) {
	return c.fetch(ctx, u, accept, limit, nil)
}

// getInto fetches u into dst, which the decoded body must fill exactly. An uncompressed body
// is read straight into dst, without a copy.
func (c *client) getInto(ctx context.Context, u, accept string, dst []byte) error {
	_, err := c.fetch(ctx, u, accept, int64(len(dst)), dst)
	return err
}

func (c *client) fetch(ctx context.Context, u, accept string, limit int64, into []byte) (*response, error) {
	cacheable := accept == "application/json" && into == nil
	var lastErr error
	for attempt := 0; ; attempt++ {
		resp, retry, err := c.once(ctx, u, accept, limit, into, cacheable, attempt > 0)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if !retry || attempt >= c.retries || ctx.Err() != nil {
			return nil, lastErr
		}
		wait := c.backoff << attempt
		c.log.Debug("tiled: retrying", "url", u, "attempt", attempt+1, "after", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, lastErr
		case <-time.After(wait):
		}
	}
}

// once sends one request. retry says whether the failure is worth another attempt
// (connection errors, 5xx); fresh asks for a new connection (after a 500 the server drops
// the one it answered on).
func (c *client) once(ctx context.Context, u, accept string, limit int64, into []byte, cacheable, fresh bool) (_ *response, retry bool, _ error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, false, fmt.Errorf("GET %s: %w", u, ctx.Err())
	}
	defer func() { <-c.sem }()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, fmt.Errorf("GET %s: %w", u, err)
	}
	req.Close = fresh
	req.Header.Set("Accept", accept)
	req.Header.Set("Accept-Encoding", acceptEncoding)
	if c.key != "" {
		req.Header.Set("Authorization", "Apikey "+c.key)
	}
	var kept etagEntry
	if cacheable {
		c.mu.Lock()
		kept = c.etags[u]
		c.mu.Unlock()
		if kept.tag != "" {
			req.Header.Set("If-None-Match", kept.tag)
		}
	}
	c.reqMu.Lock()
	c.requests++
	c.reqMu.Unlock()
	res, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, fmt.Errorf("GET %s: no answer within %v: %w", u, c.timeout, err)
		}
		return nil, true, fmt.Errorf("GET %s: %w", u, stripURLError(err))
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotModified && kept.tag != "" {
		return &response{body: kept.body, contentType: "application/json", etag: kept.tag}, false, nil
	}
	if res.StatusCode != http.StatusOK {
		detail := readDetail(res.Body)
		return nil, res.StatusCode >= 500, &HTTPError{URL: u, Status: res.StatusCode, Detail: detail}
	}
	enc := strings.TrimSpace(strings.ToLower(res.Header.Get("Content-Encoding")))
	ct := res.Header.Get("Content-Type")
	if into != nil && ct != "" && !strings.HasPrefix(ct, accept) {
		return nil, false, fmt.Errorf("GET %s: content-type %q, want %s", u, ct, accept)
	}
	if into != nil && (enc == "" || enc == "identity") {
		if res.ContentLength >= 0 && res.ContentLength != int64(len(into)) {
			return nil, false, fmt.Errorf("GET %s: %d bytes, want %d", u, res.ContentLength, len(into))
		}
		if n, err := io.ReadFull(res.Body, into); err != nil {
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				return nil, false, fmt.Errorf("GET %s: %d bytes, want %d", u, n, len(into))
			}
			if ctx.Err() != nil {
				return nil, false, fmt.Errorf("GET %s: body not read within %v: %w", u, c.timeout, err)
			}
			return nil, true, fmt.Errorf("GET %s: read body: %w", u, err)
		}
		if n, _ := res.Body.Read(make([]byte, 1)); n > 0 {
			return nil, false, fmt.Errorf("GET %s: more than the %d bytes wanted", u, len(into))
		}
		return &response{body: into, contentType: ct, etag: res.Header.Get("Etag")}, false, nil
	}
	if res.ContentLength > limit+limit/8+1<<16 {
		return nil, false, fmt.Errorf("GET %s: %w (%d bytes, limit %d)", u, errTooBig, res.ContentLength, limit)
	}
	// The wire body is bounded too: compressed data never needs to be much larger than what
	// it decodes to.
	wire, err := io.ReadAll(io.LimitReader(res.Body, limit+limit/8+1<<16+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, fmt.Errorf("GET %s: body not read within %v: %w", u, c.timeout, err)
		}
		return nil, true, fmt.Errorf("GET %s: read body: %w", u, err)
	}
	if int64(len(wire)) > limit+limit/8+1<<16 {
		return nil, false, fmt.Errorf("GET %s: %w (limit %d)", u, errTooBig, limit)
	}
	body, err := decodeBody(enc, wire, limit)
	if err != nil {
		return nil, false, fmt.Errorf("GET %s: decode body: %w", u, err)
	}
	if into != nil {
		if len(body) != len(into) {
			return nil, false, fmt.Errorf("GET %s: %d bytes decoded, want %d", u, len(body), len(into))
		}
		copy(into, body)
		body = into
	}
	r := &response{body: body, contentType: ct, etag: res.Header.Get("Etag")}
	if cacheable && r.etag != "" && len(body) <= etagMaxBody {
		c.keep(u, etagEntry{tag: r.etag, body: body})
	}
	return r, false, nil
}

func (c *client) keep(u string, e etagEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.etags[u]; ok {
		c.etagSize -= len(old.body)
	}
	for k, v := range c.etags {
		if c.etagSize+len(e.body) <= etagBudget {
			break
		}
		delete(c.etags, k)
		c.etagSize -= len(v.body)
	}
	c.etags[u] = e
	c.etagSize += len(e.body)
}

// readDetail returns the server's explanation of an error, from tiled's {"detail": ...}
// JSON, shortened and on one line.
func readDetail(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 4096))
	s := strings.TrimSpace(string(b))
	if v, err := parseJSON(b); err == nil {
		if m, ok := v.(map[string]any); ok {
			switch d := m["detail"].(type) {
			case string:
				s = d
			case nil:
			default:
				s = string(catalog.AppendJSON(nil, d))
			}
		}
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// stripURLError drops the *url.Error wrapper, whose text repeats the URL.
func stripURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// getJSON fetches u as JSON and decodes it.
func (c *client) getJSON(ctx context.Context, u string, limit int64) (any, error) {
	r, err := c.get(ctx, u, "application/json", limit)
	if err != nil {
		return nil, err
	}
	v, err := parseJSON(r.body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return v, nil
}

// itoa is strconv.Itoa, short.
func itoa(n int) string { return strconv.Itoa(n) }
