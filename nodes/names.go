package nodes

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Names from data (uids, stream names, data keys, configured objects) become file names by one
// scheme, documented in the README:
//
//   - '%', '/', NUL, control characters (< 0x20, 0x7f) and bytes that are not UTF-8 are written
//     as %XX (upper-case hex), so every name is a valid, printable file name and the mapping
//     is one-to-one: "a/b" is a%2Fb, "50%" is 50%25;
//   - "." and ".." are written "%2E" and "%2E%2E", the empty name "%";
//   - a name that would be one of the directory's own names (latest, by-scan-id, start.json,
//     stop.json, files.txt, descriptors.json, time.npy, time.csv, timestamps, config) has its
//     first byte %XX-encoded: a data key "time" is %74ime.npy, a stream "start.json" is
//     %73tart.json;
//   - names of one directory that differ only in letter case ("Time", "time"), which collide on
//     case-insensitive file systems (macOS, exFAT) when copied, are told apart by %XX-encoding
//     the upper-case ASCII letters of every one but the first in sorted order.
//
// The original names stay in start.json and descriptors.json.

// escapeName %XX-encodes the bytes of s that a file name must not hold.
func escapeName(s string) string {
	switch s {
	case "":
		return "%"
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c == '%' || c == '/' || c < 0x20 || c == 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
			i++
			continue
		}
		if c < 0x80 {
			b.WriteByte(c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			fmt.Fprintf(&b, "%%%02X", c)
			i++
			continue
		}
		b.WriteString(s[i : i+size])
		i += size
	}
	return b.String()
}

// encodeFirst %XX-encodes the first byte of an escaped name.
func encodeFirst(s string) string {
	if s == "" || s[0] == '%' {
		return s
	}
	return fmt.Sprintf("%%%02X", s[0]) + s[1:]
}

// encodeUpper %XX-encodes the upper-case ASCII letters of an escaped name.
func encodeUpper(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// fileNames maps the names of one directory to unique, safe file names: reserved(stem) reports
// whether a stem would take one of the directory's own names.
func fileNames(names []string, reserved func(stem string) bool) map[string]string {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	out := make(map[string]string, len(sorted))
	byFold := map[string]bool{}
	for _, n := range sorted {
		e := escapeName(n)
		if reserved(strings.ToLower(e)) {
			e = encodeFirst(e)
		}
		fold := strings.ToLower(e)
		if byFold[fold] {
			e = encodeUpper(e)
			fold = strings.ToLower(e)
		}
		byFold[fold] = true
		out[n] = e
	}
	return out
}

// Reserved names of each kind of directory (lower case), and of the files fields make there.
var (
	rootReserved   = set("latest", "by-scan-id")
	runReserved    = set("start.json", "stop.json", "files.txt")
	streamReserved = set("descriptors.json", "time.npy", "time.csv", "timestamps", "config", "time")
)

func set(names ...string) func(string) bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return func(s string) bool { return m[s] }
}

// fieldReserved: a field's stem takes a reserved name when stem.npy or stem.csv, or the stem
// itself, is one of the stream directory's names.
func fieldReserved(stem string) bool {
	return streamReserved(stem) || streamReserved(stem+".npy") || streamReserved(stem+".csv")
}
