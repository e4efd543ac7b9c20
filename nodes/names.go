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
//     the upper-case ASCII letters of every one but the one with the fewest (see fileNames).
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
	plain := true // printable ASCII without % and /: the name as it is (most uids)
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c >= 0x20 && c < 0x7f && c != '%' && c != '/'
	}
	if plain {
		return s
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
// whether a stem (lower case) would take one of the directory's own names. Of names that
// differ only in letter case, the one with the fewest capitals (then the first in byte order)
// keeps its name and the others have their capitals encoded; each of them has a capital where
// the keeper has none, so the encoded names differ from the keeper's and from each other's
// even ignoring case.
func fileNames(names []string, reserved func(stem string) bool) map[string]string {
	out := make(map[string]string, len(names))
	first := make(map[string]string, len(names)) // lower-case name -> the first name that has it
	groups := map[string][]string{}              // only where two names share one
	for _, n := range names {
		e := escapeName(n)
		low := strings.ToLower(e)
		if reserved(low) {
			e = encodeFirst(e)
			low = strings.ToLower(e)
		}
		out[n] = e
		if f, ok := first[low]; !ok {
			first[low] = n
		} else if g := groups[low]; g != nil {
			groups[low] = append(g, n)
		} else {
			groups[low] = []string{f, n}
		}
	}
	for _, g := range groups {
		if len(g) < 2 {
			continue
		}
		sort.Slice(g, func(i, j int) bool {
			ci, cj := capitals(out[g[i]]), capitals(out[g[j]])
			if ci != cj {
				return ci < cj
			}
			return g[i] < g[j]
		})
		for _, n := range g[1:] {
			out[n] = encodeUpper(out[n])
		}
	}
	return out
}

func capitals(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			n++
		}
	}
	return n
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

// fieldReserved: a field's stem takes a reserved name when stem.npy, stem.csv or stem.tif, or
// the stem itself, is one of the stream directory's names.
func fieldReserved(stem string) bool {
	return streamReserved(stem) || streamReserved(stem+".npy") || streamReserved(stem+".csv") || streamReserved(stem+".tif")
}
