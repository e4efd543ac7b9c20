package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// --since and --until: runs whose start document's time lies in [since, until), as
// databroker's TimeRange query selects them. They become a clause on the start document's
// "time" of the --query, so that they go where --query goes: to the MongoDB server, to tiled's
// comparison filters, or to brokerfs's own matcher for run files.

type timeFlags struct {
	since, until string
}

func (t *timeFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&t.since, "since", "", "only runs started at or after this time: RFC 3339 or YYYY-MM-DD[ HH:MM[:SS]] (local time unless an offset is given)")
	fl.StringVar(&t.until, "until", "", "only runs started before this time (same forms as --since; a date alone means its midnight)")
}

// restrict adds the time clause to a decoded query (nil: none) and returns it.
func (t *timeFlags) restrict(query map[string]any) (map[string]any, error) {
	if t.since == "" && t.until == "" {
		return query, nil
	}
	cond := map[string]any{}
	var since, until time.Time
	var err error
	if t.since != "" {
		if since, err = parseTime(t.since, time.Local); err != nil {
			return nil, usageError{fmt.Sprintf("--since: %v", err)}
		}
		cond["$gte"] = unixSeconds(since)
	}
	if t.until != "" {
		if until, err = parseTime(t.until, time.Local); err != nil {
			return nil, usageError{fmt.Sprintf("--until: %v", err)}
		}
		cond["$lt"] = unixSeconds(until)
	}
	if t.since != "" && t.until != "" && !since.Before(until) {
		return nil, usageError{fmt.Sprintf("--since %s is not before --until %s", t.since, t.until)}
	}
	clause := map[string]any{"time": cond}
	switch {
	case query == nil:
		return clause, nil
	case query["time"] == nil:
		// One flat query: tiled turns its clauses into filters only at the top level.
		out := make(map[string]any, len(query)+1)
		for k, v := range query {
			out[k] = v
		}
		out["time"] = cond
		return out, nil
	default:
		return map[string]any{"$and": []any{query, clause}}, nil
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// timeLayouts are the forms --since and --until take, with an offset (first) or without.
var (
	zonedLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02T15:04Z07:00", "2006-01-02 15:04Z07:00"}
	localLayouts = []string{
		"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999",
		"2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02", "2006-01", "2006",
	}
)

// parseTime parses RFC 3339 or YYYY[-MM[-DD[ HH:MM[:SS[.fff]]]]] ("T" or a space between date
// and time), in loc unless the string carries an offset (Z or ±HH:MM).
func parseTime(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range zonedLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	for _, l := range localLayouts {
		if t, err := time.ParseInLocation(l, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: want RFC 3339 (2024-03-01T14:00:00+01:00) or YYYY-MM-DD[ HH:MM[:SS]] in local time", s)
}
