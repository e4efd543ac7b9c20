// Package config finds the catalogs users already have configured for databroker and turns
// each into a Source that cmd/brokerfs can open: intake YAML catalogs in the intake search
// path, databroker 0.x configs (~/.config/databroker/NAME.yml, /etc/databroker/NAME.yml) and
// databroker-pack directories. It reads files only: it never connects to a database, lists a
// catalog's runs or imports a handler. What it cannot translate (a Python handler class it
// does not know, an argument it ignores) becomes a warning on the Source, not a failure.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	"github.com/brokerfs/brokerfs/handlers"
)

// ErrNotFound means no configured catalog has the name asked for.
var ErrNotFound = errors.New("catalog not found")

// ErrSkipped marks a source or file that is not an error in itself but that brokerfs does not
// read (another intake driver, a databroker 0.x config for a sqlite store, a YAML file that is
// no catalog): callers print these as warnings.
var ErrSkipped = errors.New("skipped")

// Kind is the kind of store a Source reads.
type Kind int

// The kinds of store brokerfs reads.
const (
	Msgpack         Kind = iota + 1 // suitcase-msgpack files
	JSONL                           // suitcase-jsonl files
	MongoNormalized                 // MongoDB, one Mongo document per Bluesky document
	MongoEmbedded                   // MongoDB, one header document per run
)

func (k Kind) String() string {
	switch k {
	case Msgpack:
		return "msgpack"
	case JSONL:
		return "jsonl"
	case MongoNormalized:
		return "mongo-normalized"
	case MongoEmbedded:
		return "mongo-embedded"
	}
	return "unknown"
}

// Source is one named catalog from a configuration file, translated for brokerfs.
//
// The URIs may carry credentials: print a Source with String (or %v), never its URI fields.
type Source struct {
	Name string
	File string // the configuration file, absolute
	Line int    // the line of the source's name in File; 0 for a databroker 0.x config
	// Driver is the intake driver as written ("bluesky-msgpack-catalog" or a class path);
	// for a databroker 0.x config, the metadatastore's module.class.
	Driver string
	Kind   Kind
	// Paths are the globs of a Msgpack or JSONL source, absolute: relative ones are resolved
	// against File's directory, and a databroker-pack's metadata.relative_paths win over
	// args.paths.
	Paths []string
	// MetadataURI and AssetURI are the databases of a MongoNormalized source (AssetURI equals
	// MetadataURI when one database holds both); EmbeddedURI is that of a MongoEmbedded one.
	// Each names its database in its path.
	MetadataURI, AssetURI, EmbeddedURI string
	// RootMap is the source's root_map, relative values resolved against File's directory.
	RootMap handlers.RootMap
	// Handlers maps the specs of the source's handler registry to the brokerfs built-in spec
	// that reads them (usually the same spec). Specs whose Python class brokerfs does not
	// know are left out, with a warning.
	Handlers map[string]string
	// Transforms maps document kinds (start, stop, descriptor, resource) to the import
	// paths of the Python functions that transform them (args.transforms).
	Transforms map[string]string
	// Warnings say what brokerfs translated differently from databroker, or ignored.
	Warnings []string
}

// Where tells where the source's data is: its path globs, or its database URIs with
// credentials redacted.
func (s Source) Where() string {
	switch s.Kind {
	case Msgpack, JSONL:
		return strings.Join(s.Paths, " ")
	case MongoNormalized:
		if s.AssetURI == "" || s.AssetURI == s.MetadataURI {
			return Redact(s.MetadataURI)
		}
		return Redact(s.MetadataURI) + " (assets " + Redact(s.AssetURI) + ")"
	case MongoEmbedded:
		return Redact(s.EmbeddedURI)
	}
	return ""
}

// String describes the source in one line, credentials redacted.
func (s Source) String() string {
	return fmt.Sprintf("%s (%s) %s", s.Name, s.Kind, s.Where())
}

// GoString is String's counterpart for %#v: the fields, with the URIs redacted.
func (s Source) GoString() string {
	type plain Source // no methods, so %#v does not recurse
	p := plain(s)
	p.MetadataURI, p.AssetURI, p.EmbeddedURI = Redact(p.MetadataURI), Redact(p.AssetURI), Redact(p.EmbeddedURI)
	return strings.Replace(fmt.Sprintf("%#v", p), "config.plain{", "config.Source{", 1)
}

// LogValue keeps credentials out of structured logs.
func (s Source) LogValue() slog.Value { return slog.StringValue(s.String()) }

// FileError is a problem with a configuration file, or with one source in it.
type FileError struct {
	File   string
	Line   int    // 0 when unknown
	Source string // the source's name, when the problem is one source's
	Err    error
}

// Error reads "FILE:LINE: source NAME: problem"; URIs in it are redacted.
func (e *FileError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Source != "" {
		b.WriteString("source " + strconv.Quote(e.Source) + ": ")
	}
	b.WriteString(e.Err.Error())
	return RedactText(b.String())
}

func (e *FileError) Unwrap() error { return e.Err }

// Redact returns uri with its credentials hidden: the user information before '@' and the
// values of query options that carry secrets become "xxxxx". It works on strings url.Parse
// refuses (several hosts, unescaped characters); when unsure where the user information
// ends, it hides more, never less. (The same rules as catalog/mongo.Redact, which this
// package does not import: it would pull the MongoDB driver into configuration parsing.)
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
		if k, _, ok := strings.Cut(p, "="); ok && secretOption(k) {
			params[i] = k + "=xxxxx"
		}
	}
	return s + "?" + strings.Join(params, "&")
}

func secretOption(key string) bool {
	k := strings.ToLower(key)
	return strings.Contains(k, "password") || strings.Contains(k, "pwd") || strings.Contains(k, "token") ||
		strings.Contains(k, "secret") || k == "authmechanismproperties"
}

// uriInText finds URIs in free text: a scheme, "://", then anything up to white space or a
// quote (YAML error messages quote values in backticks).
var uriInText = regexp.MustCompile("[A-Za-z][A-Za-z0-9+.-]*://[^\\s\"'`]+")

// RedactText redacts every URI in s, for messages that quote configuration values.
func RedactText(s string) string { return uriInText.ReplaceAllStringFunc(s, Redact) }
