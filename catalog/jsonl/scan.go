package jsonl

import (
	"bytes"
	"errors"
	"fmt"
)

// docKind is the name of a line's document.
type docKind uint8

const (
	kindUnknown docKind = iota
	kindStart
	kindStop
	kindDescriptor
	kindEvent
	kindEventPage
	kindResource
	kindDatum
	kindDatumPage
)

var kindNames = [...]string{"", "start", "stop", "descriptor", "event", "event_page", "resource", "datum", "datum_page"}

func (k docKind) String() string { return kindNames[k] }

func kindOf(name []byte) docKind {
	switch string(name) {
	case "start":
		return kindStart
	case "stop":
		return kindStop
	case "descriptor":
		return kindDescriptor
	case "event":
		return kindEvent
	case "event_page":
		return kindEventPage
	case "resource":
		return kindResource
	case "datum":
		return kindDatum
	case "datum_page":
		return kindDatumPage
	}
	return kindUnknown
}

func skipWS(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

var errLine = errors.New(`line is not a ["name", {document}] array`)

// header reads the `["name", ` prefix of a line: the document's kind and where it begins.
// Finding the name costs a few bytes, whatever the length of the document.
func header(line []byte) (docKind, int, error) {
	i := skipWS(line, 0)
	if i >= len(line) || line[i] != '[' {
		return 0, 0, errLine
	}
	i = skipWS(line, i+1)
	if i >= len(line) || line[i] != '"' {
		return 0, 0, errLine
	}
	j := bytes.IndexByte(line[i+1:], '"')
	if j < 0 {
		return 0, 0, errLine
	}
	name := line[i+1 : i+1+j]
	i = skipWS(line, i+2+j)
	if i >= len(line) || line[i] != ',' {
		return 0, 0, errLine
	}
	k := kindOf(name)
	if k == kindUnknown {
		return 0, 0, fmt.Errorf("unknown document name %q", name)
	}
	return k, skipWS(line, i+1), nil
}

// trailer checks that only "]" and whitespace follow the document, which ends at i.
func trailer(line []byte, i int) error {
	i = skipWS(line, i)
	if i >= len(line) || line[i] != ']' || skipWS(line, i+1) != len(line) {
		return fmt.Errorf("offset %d: %w", i, errLine)
	}
	return nil
}

// Byte classes for skipValue: bytes that end a scalar token, and bytes that matter inside a
// list or object. Table lookups keep the skipping loops tight.
var (
	endsToken = byteSet(" \t\n\r,]}:")
	special   = byteSet(`"{}[]`)
)

func byteSet(chars string) *[256]bool {
	var set [256]bool
	for i := range len(chars) {
		set[chars[i]] = true
	}
	return &set
}

// skipValue returns the end of the JSON value that starts at i (after whitespace), checking only
// that strings end and brackets balance. The decoder proper catches what this lets through.
func skipValue(b []byte, i int) (int, error) { return skipNested(b, i, maxDepth) }

// skipNested is skipValue with a bound on the nesting of the value's lists and objects.
func skipNested(b []byte, i, limit int) (int, error) {
	i = skipWS(b, i)
	if i >= len(b) {
		return i, &syntaxError{i, "unexpected end of line"}
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				j, err := skipString(b, i)
				if err != nil {
					return j, err
				}
				i = j
			case '{', '[':
				depth++
				if depth > limit {
					return i, &syntaxError{i, "nesting too deep"}
				}
				i++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
				i++
			default:
				i++
			}
			for i < len(b) && !special[b[i]] {
				i++
			}
		}
		return i, &syntaxError{i, "unterminated list or object"}
	case ',', ':', '}', ']':
		return i, &syntaxError{i, fmt.Sprintf("unexpected %q", b[i])}
	}
	j := i
	for j < len(b) && !endsToken[b[j]] {
		j++
	}
	return j, nil
}

// skipString returns the end of the string literal at i.
func skipString(b []byte, i int) (int, error) {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b), &syntaxError{len(b), "unterminated string"}
		}
		i += j
		n := 0 // backslashes just before the quote: an odd count escapes it
		for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		i++
		if n%2 == 0 {
			return i, nil
		}
	}
}

// eachMember walks the top-level members of the object at b[i] without decoding values: fn
// gets each key's raw bytes and the span of its value. It returns the object's end.
func eachMember(b []byte, i int, fn func(key []byte, v, end int) error) (int, error) {
	return eachMemberNested(b, i, nil, fn)
}

// eachMemberNested is eachMember with a nesting bound per key (nil: maxDepth for all).
func eachMemberNested(b []byte, i int, limit func(key []byte) int, fn func(key []byte, v, end int) error) (int, error) {
	i = skipWS(b, i)
	if i >= len(b) || b[i] != '{' {
		return i, &syntaxError{i, "want object"}
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, &syntaxError{i, "want object key"}
		}
		k, err := skipString(b, i)
		if err != nil {
			return k, err
		}
		key := b[i+1 : k-1]
		i = skipWS(b, k)
		if i >= len(b) || b[i] != ':' {
			return i, &syntaxError{i, "want ':'"}
		}
		v := skipWS(b, i+1)
		depth := maxDepth
		if limit != nil {
			depth = limit(key)
		}
		end, err := skipNested(b, v, depth)
		if err != nil {
			return end, err
		}
		if err := fn(key, v, end); err != nil {
			return v, err
		}
		i = skipWS(b, end)
		switch {
		case i < len(b) && b[i] == ',':
			i = skipWS(b, i+1)
		case i < len(b) && b[i] == '}':
			return i + 1, nil
		default:
			return i, &syntaxError{i, "want ',' or '}' in object"}
		}
	}
}

// lineInfo is what the index needs of an event or datum line.
type lineInfo struct {
	kind docKind
	doc  int    // offset of the document in the line
	ref  []byte // descriptor uid of an event, resource uid of a datum; aliases the line
	rows int    // rows of an event (1) or event_page
}

func isNumStart(c byte) bool { return isDigit(c) || c == '-' || c == 'N' || c == 'I' }

// classify checks an event, event_page, datum or datum_page line's outline without decoding its
// values: the keys that must be there, with values of the right JSON type. The index counts the
// rows of the lines it accepts and skips the others; EventPages applies the same test, so the
// two always agree on row numbers. Other kinds come back with only kind and doc set.
func classify(line []byte) (lineInfo, error) {
	kind, doc, err := header(line)
	info := lineInfo{kind: kind, doc: doc}
	if err != nil {
		return info, err
	}
	var seen [3]bool // time, seq_num, data
	var datumID []byte
	var seqAt, bodyAt [3]int // event pages: where seq_num, and data, timestamps, filled begin (0: absent)
	var fn func(key []byte, v, end int) error
	switch kind {
	case kindEvent, kindEventPage:
		list := kind == kindEventPage
		fn = func(key []byte, v, end int) error {
			c := line[v]
			switch string(key) {
			case "descriptor":
				if c != '"' || bytes.IndexByte(line[v+1:end-1], '\\') >= 0 {
					return errors.New(`key "descriptor": want plain string`)
				}
				if info.ref == nil {
					info.ref = line[v+1 : end-1]
				}
			case "time":
				seen[0] = true
				if list {
					if c != '[' {
						return errors.New(`key "time": want list`)
					}
					n, err := countElements(line, v)
					info.rows = n
					return err
				}
				if !isNumStart(c) {
					return errors.New(`key "time": want number`)
				}
			case "seq_num":
				seen[1] = true
				if list && c != '[' || !list && !isNumStart(c) {
					return errors.New(`key "seq_num": want number or list`)
				}
				seqAt[0] = v
			case "data", "timestamps", "filled":
				if c != '{' {
					return fmt.Errorf("key %q: want object", key) // the decoder takes nothing else
				}
				if key[0] == 'd' {
					seen[2] = true
				}
				switch key[0] {
				case 'd':
					bodyAt[0] = v
				case 't':
					bodyAt[1] = v
				default:
					bodyAt[2] = v
				}
			}
			return nil
		}
		if !list {
			info.rows = 1
		}
	case kindDatum, kindDatumPage:
		fn = func(key []byte, v, end int) error {
			switch string(key) {
			case "resource":
				if line[v] == '"' && bytes.IndexByte(line[v+1:end-1], '\\') < 0 {
					info.ref = line[v+1 : end-1]
				}
			case "datum_id":
				if line[v] == '"' {
					datumID = line[v+1 : end-1]
				}
			}
			return nil
		}
	default:
		return info, nil
	}
	var limit func([]byte) int
	if kind == kindEvent || kind == kindEventPage {
		// The decoder decodes data and filled values inside the document and their object:
		// it allows them a level less than a value skipped whole.
		limit = func(key []byte) int {
			if string(key) == "data" || string(key) == "filled" {
				return maxDepth - 1
			}
			return maxDepth
		}
	}
	end, err := eachMemberNested(line, doc, limit, fn)
	if err == nil {
		err = trailer(line, end)
	}
	if err != nil {
		return info, err
	}
	switch kind {
	case kindEvent, kindEventPage:
		switch {
		case info.ref == nil:
			return info, errors.New(`missing key "descriptor"`)
		case !seen[0]:
			return info, errors.New(`missing key "time"`)
		case !seen[1]:
			return info, errors.New(`missing key "seq_num"`)
		case !seen[2]:
			return info, errors.New(`missing key "data"`)
		}
		if kind == kindEventPage {
			if err := checkPage(line, info.rows, seqAt[0], bodyAt); err != nil {
				return info, err
			}
		}
	case kindDatum:
		if info.ref == nil && datumID != nil { // legacy datums name their resource in the id
			info.ref = datumID
			if i := bytes.IndexByte(datumID, '/'); i >= 0 {
				info.ref = datumID[:i]
			}
		}
		fallthrough
	case kindDatumPage:
		if info.ref == nil {
			return info, errors.New(`missing key "resource"`)
		}
	}
	return info, nil
}

// countElements counts the elements of the list at b[i].
func countElements(b []byte, i int) (int, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return 0, nil
	}
	n := 0
	for {
		end, err := skipValue(b, i)
		if err != nil {
			return n, err
		}
		n++
		i = skipWS(b, end)
		switch {
		case i < len(b) && b[i] == ',':
			i++
		case i < len(b) && b[i] == ']':
			return n, nil
		default:
			return n, &syntaxError{i, "want ',' or ']' in list"}
		}
	}
}

// eventPrefix is how suitcase-jsonl begins most event lines; fastDescriptor reads the descriptor
// uid from it without walking the document.
var eventPrefix = []byte(`["event", {"descriptor": "`)

// fastDescriptor returns the descriptor uid of an event line that begins with eventPrefix, or nil.
func fastDescriptor(line []byte) []byte {
	if !bytes.HasPrefix(line, eventPrefix) {
		return nil
	}
	rest := line[len(eventPrefix):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return nil
	}
	return rest[:j]
}

// decodeLine decodes a whole line into its kind, generic document and the document's raw bytes
// (aliasing line).
func (d *decoder) decodeLine(line []byte) (docKind, map[string]any, []byte, error) {
	kind, doc, err := header(line)
	if err != nil {
		return kind, nil, nil, err
	}
	d.reset(line, doc)
	if d.peek() != '{' {
		return kind, nil, nil, d.errorf("document is not an object")
	}
	m, err := d.object()
	if err == nil {
		err = trailer(line, d.i)
	}
	if err != nil {
		return kind, nil, nil, err
	}
	return kind, m, line[doc:d.i], nil
}

// checkPage checks what the event decoder needs of an event page beyond its outline: as many
// seq_nums as times, and every data, timestamps and filled column a list of that many values
// (or none). The index skips a page that fails, and so does every read (classify), so that a
// ragged page costs that page only, with one log line, never the stream.
func checkPage(line []byte, rows, seq int, body [3]int) error {
	if n, err := countElements(line, seq); err != nil || n != rows {
		return fmt.Errorf("%d seq_num values for %d times", n, rows)
	}
	for i, at := range body {
		if at == 0 {
			continue
		}
		part := [...]string{"data", "timestamps", "filled"}[i]
		_, err := eachMember(line, at, func(key []byte, v, _ int) error {
			if line[v] != '[' {
				return fmt.Errorf("%s %q: want list", part, key)
			}
			if n, err := countElements(line, v); err != nil || n != rows && n != 0 {
				return fmt.Errorf("%s %q has %d values in a page of %d rows", part, key, n, rows)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
