package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog/tiled"
)

func TestParseTime(t *testing.T) {
	// A zone with an offset that is neither UTC nor the machine's, so that "local time" is
	// seen to be applied; and a DST change (2024-03-31 in Europe/Berlin) to show the offset
	// comes from the date.
	berlin := time.FixedZone("X", 0)
	if l, err := time.LoadLocation("Europe/Berlin"); err == nil {
		berlin = l
	}
	// Expected values written out as Unix seconds, computed by hand (date -d ... +%s).
	cases := []struct {
		in   string
		want int64
	}{
		{"2024-03-01", 1709247600},          // 2024-03-01T00:00+01:00
		{"2024-03-01 14:30", 1709299800},    // +01:00
		{"2024-03-01T14:30", 1709299800},    // T as separator
		{"2024-03-01 14:30:15", 1709299815}, // seconds
		{"2024-06-01 12:00", 1717236000},    // summer time: +02:00
		{"2024-03-01T14:30:00Z", 1709303400},
		{"2024-03-01T14:30:00+05:30", 1709283600},
		{"2024-03-01 14:30:00-04:00", 1709317800},
		{" 2024-03 ", 1709247600},
		{"2024", 1704063600}, // 2024-01-01T00:00+01:00
	}
	for _, c := range cases {
		got, err := parseTime(c.in, berlin)
		if err != nil {
			t.Errorf("parseTime(%q): %v", c.in, err)
			continue
		}
		want := c.want
		if berlin.String() == "X" { // no tzdata: the zone is UTC+0
			if off := zoneOffset(c.in); off >= 0 {
				want += off
			}
		}
		if got.Unix() != want {
			t.Errorf("parseTime(%q) = %v (%d), want %d", c.in, got, got.Unix(), want)
		}
	}
	frac, err := parseTime("2024-03-01T14:30:00.25Z", berlin)
	if err != nil || frac.UnixNano() != 1709303400250000000 {
		t.Errorf("fractional seconds: %v, %v", frac, err)
	}
	for _, bad := range []string{"", "yesterday", "2024-13-01", "2024-02-30", "01/03/2024", "1709303400", "2024-03-01 25:00", "2024-03-01T14:30:00+25:00"} {
		if got, err := parseTime(bad, berlin); err == nil {
			t.Errorf("parseTime(%q) = %v, want an error", bad, got)
		}
	}
}

// zoneOffset is what the Berlin offset of a local-time case was, for the fallback without
// tzdata: -1 for cases that carry their own offset.
func zoneOffset(s string) int64 {
	switch s {
	case "2024-03-01T14:30:00Z", "2024-03-01T14:30:00+05:30", "2024-03-01 14:30:00-04:00":
		return -1
	case "2024-06-01 12:00":
		return 7200
	}
	return 3600
}

func TestTimeRestrict(t *testing.T) {
	since := "2024-03-01T00:00:00Z"
	until := "2024-03-02T00:00:00Z"
	for _, c := range []struct {
		flags timeFlags
		query map[string]any
		want  string
	}{
		{timeFlags{}, nil, "map[]"},
		{timeFlags{since: since}, nil, "map[time:map[$gte:1.7092512e+09]]"},
		{timeFlags{until: until}, map[string]any{"plan_name": "scan"}, "map[plan_name:scan time:map[$lt:1.7093376e+09]]"},
		{timeFlags{since: since, until: until}, map[string]any{"time": 5.0},
			"map[$and:[map[time:5] map[time:map[$gte:1.7092512e+09 $lt:1.7093376e+09]]]]"},
	} {
		got, err := c.flags.restrict(c.query)
		if err != nil {
			t.Errorf("%+v: %v", c.flags, err)
			continue
		}
		if s := fmt.Sprint(map[string]any(got)); s != c.want {
			t.Errorf("%+v restrict(%v) = %s, want %s", c.flags, c.query, s, c.want)
		}
	}
	for _, bad := range []timeFlags{{since: "soon"}, {until: "later"}, {since: until, until: since}, {since: since, until: since}} {
		if _, err := bad.restrict(nil); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestTimeRestrictTiled: the time clause goes to a tiled server as comparison filters, none
// of it left for the client alone.
func TestTimeRestrictTiled(t *testing.T) {
	q, err := (&timeFlags{since: "2024-03-01T00:00:00Z", until: "2024-03-02T00:00:00Z"}).restrict(map[string]any{"plan_name": "scan"})
	if err != nil {
		t.Fatal(err)
	}
	v, rest := tiled.Filters(q)
	if len(rest) > 0 {
		t.Errorf("left for the client: %v", rest)
	}
	enc := v.Encode()
	for _, want := range []string{"operator%5D=ge", "operator%5D=lt", "key%5D=time", "value%5D=1709251200", "value%5D=1709337600"} {
		if !strings.Contains(enc, want) {
			t.Errorf("filters %s lack %s", enc, want)
		}
	}
}
