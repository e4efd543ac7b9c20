package jsonl

import (
	"bytes"
	"encoding/binary"
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
	for i < len(b) && b[i] <= ' ' && isSpace(b[i]) {
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

// skipValue returns the end of the JSON value that starts at i (after whitespace), checking its
// syntax as fully as the decoder reads it (see scanValue).
func skipValue(b []byte, i int) (int, error) { return scanValue(b, i, maxDepth) }

// scanValue returns the end of the JSON value that starts at i (after whitespace), checking its
// syntax exactly as the decoder reads it: strings (escapes, no control characters; invalid UTF-8
// passes, as the decoder replaces it), numbers (NaN, Infinity and -Infinity included), literals,
// and lists and objects nested at most limit deep (the value's own brackets count from 1). It
// decodes nothing and allocates nothing, so that the index can check every line it counts and
// a value the decoder would fail on is skipped by the index and every read alike.
func scanValue(b []byte, i, limit int) (int, error) {
	i = skipWS(b, i)
	if i < len(b) { // scalars, most values, without scanContainer's state
		switch c := b[i]; {
		case c == '"':
			return scanString(b, i)
		case c-'0' < 10 || c == '-':
			return scanNumber(b, i)
		}
	}
	return scanContainer(b, i, limit)
}

// scanContainer is scanValue for any value, lists and objects included.
func scanContainer(b []byte, i, limit int) (int, error) {
	var objects [maxDepth/64 + 1]uint64 // bit d-1 set: the container at depth d is an object
	depth, obj := 0, false              // obj: the innermost container is an object
	for {
		// A value begins at i.
		i = skipWS(b, i)
		if i >= len(b) {
			return i, &syntaxError{i, "unexpected end of line"}
		}
		var err error
		switch c := b[i]; c {
		case '{', '[':
			if depth >= limit || depth >= maxDepth {
				return i, &syntaxError{i, fmt.Sprintf("nesting deeper than %d", maxDepth)}
			}
			i = skipWS(b, i+1)
			if i < len(b) && b[i] == c+2 { // '{'+2 is '}', '['+2 is ']': empty
				i++
				break
			}
			depth++
			obj = c == '{'
			if obj {
				objects[(depth-1)/64] |= 1 << ((depth - 1) % 64)
			} else {
				objects[(depth-1)/64] &^= 1 << ((depth - 1) % 64)
			}
			if c == '{' {
				if i, err = scanKey(b, i); err != nil {
					return i, err
				}
			}
			continue
		case '"':
			i, err = scanString(b, i)
		case 't':
			i, err = scanWord(b, i, "true")
		case 'f':
			i, err = scanWord(b, i, "false")
		case 'n':
			i, err = scanWord(b, i, "null")
		default:
			i, err = scanNumber(b, i)
		}
		if err != nil {
			return i, err
		}
		// A value ended at i: close containers until one goes on.
		for {
			if depth == 0 {
				return i, nil
			}
			i = skipWS(b, i)
			switch {
			case i < len(b) && b[i] == ',':
				i++
				if obj {
					if i, err = scanKey(b, skipWS(b, i)); err != nil {
						return i, err
					}
				}
			case obj && i < len(b) && b[i] == '}', !obj && i < len(b) && b[i] == ']':
				depth--
				i++
				if depth > 0 {
					obj = objects[(depth-1)/64]&(1<<((depth-1)%64)) != 0
				}
				continue
			case obj:
				return i, &syntaxError{i, "want ',' or '}' in object"}
			default:
				return i, &syntaxError{i, "want ',' or ']' in list"}
			}
			break
		}
	}
}

// scanKey checks an object key and its colon at i, returning where its value begins.
func scanKey(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return i, &syntaxError{i, "want object key"}
	}
	i, err := scanString(b, i)
	if err != nil {
		return i, err
	}
	i = skipWS(b, i)
	if i >= len(b) || b[i] != ':' {
		return i, &syntaxError{i, "want ':'"}
	}
	return i + 1, nil
}

func scanWord(b []byte, i int, word string) (int, error) {
	if !hasWord(b[i:], word) {
		return i, &syntaxError{i, "invalid literal"}
	}
	return i + len(word), nil
}

// stringStop marks the bytes a string scan must look at: the quote, backslash and control
// characters.
var stringStop = func() *[256]bool {
	var set [256]bool
	for c := range 0x20 {
		set[c] = true
	}
	set['"'], set['\\'] = true, true
	return &set
}()

// SWAR constants: a byte repeated in each of a word's eight.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plainWord reports whether none of the eight bytes of w (little-endian) is a quote, a
// backslash or a control character: no byte stops a string scan.
func plainWord(w uint64) bool {
	// The classic tests, exact as to whether any byte matches: a byte below n has its high
	// bit set in (w - n*ones) &^ w; a byte equal to c is a zero byte of w ^ c*ones.
	q, bs := w^'"'*ones, w^'\\'*ones
	stop := (w-0x20*ones)&^w | (q-ones)&^q | (bs-ones)&^bs
	return stop&highs == 0
}

// scanString returns the end of the string literal at i, checking it as strBytes reads it.
func scanString(b []byte, i int) (int, error) {
	i++
	for {
		for i+8 <= len(b) && plainWord(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && !stringStop[b[i]] {
			i++
		}
		if i >= len(b) {
			return len(b), &syntaxError{len(b), "unterminated string"}
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, nil
		case c < 0x20:
			return i, &syntaxError{i, "control character in string"}
		}
		// A backslash.
		if i+1 >= len(b) {
			return len(b), &syntaxError{len(b), "unterminated string"}
		}
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			if _, ok := hex4(b[i+2:]); !ok {
				return i, &syntaxError{i, "invalid \\u escape"}
			}
			i += 6
		default:
			return i, &syntaxError{i, "invalid escape"}
		}
	}
}

// scanNumber returns the end of the number at i, checking it as decoder.num reads it.
func scanNumber(b []byte, i int) (int, error) {
	neg := b[i] == '-'
	if neg {
		i++
	}
	switch {
	case i < len(b) && b[i] == 'I':
		return scanWord(b, i, "Infinity")
	case i < len(b) && b[i] == 'N' && !neg:
		return scanWord(b, i, "NaN")
	case i >= len(b):
		return i, &syntaxError{i, "unexpected end of line"}
	case b[i]-'0' >= 10:
		return i, &syntaxError{i, fmt.Sprintf("unexpected %q", b[i])}
	case b[i] == '0':
		i++
	default:
		i = digits(b, i+1)
	}
	if i < len(b) && b[i] == '.' {
		if i+1 >= len(b) || b[i+1]-'0' >= 10 {
			return i + 1, &syntaxError{i + 1, "invalid number"}
		}
		i = digits(b, i+2)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i]-'0' >= 10 {
			return i, &syntaxError{i, "invalid number"}
		}
		i = digits(b, i+1)
	}
	return i, nil
}

// digits returns the end of the run of decimal digits at i, eight at a time while it can: a
// byte is a digit when its high nibble is 3 and adding 6 does not carry out of its low one.
func digits(b []byte, i int) int {
	for i+8 <= len(b) {
		w := binary.LittleEndian.Uint64(b[i:])
		if w&(0xf0*ones) != 0x30*ones || (w+0x06*ones)&(0xf0*ones) != 0x30*ones {
			break
		}
		i += 8
	}
	for i < len(b) && b[i]-'0' < 10 {
		i++
	}
	return i
}

// eachMember walks the members of the object at b[i], checking its syntax (scanValue) without
// decoding values: fn gets each key's raw bytes and the span of its value. limit bounds the
// nesting of each value (maxDepth less the object's own depth). It returns the object's end.
func eachMember(b []byte, i, limit int, fn func(key []byte, v, end int) error) (int, error) {
	i = skipWS(b, i)
	if i >= len(b) || b[i] != '{' {
		return i, &syntaxError{i, "want object"}
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		k, err := scanKey(b, i)
		if err != nil {
			return k, err
		}
		key := b[i+1 : bytes.LastIndexByte(b[:k], '"')]
		v := skipWS(b, k)
		end, err := scanValue(b, v, limit)
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

// eachElement walks the elements of the list at b[i], whose syntax is checked: fn gets the
// offset of each. It returns the number of elements.
func eachElement(b []byte, i int, fn func(v int) error) (int, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return 0, nil
	}
	n := 0
	for {
		i = skipWS(b, i)
		if err := fn(i); err != nil {
			return n, err
		}
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

// countElements counts the elements of the list at b[i], whose syntax is checked.
func countElements(b []byte, i int) (int, error) {
	return eachElement(b, i, func(int) error { return nil })
}

// lineInfo is what the index needs of an event or datum line.
type lineInfo struct {
	kind docKind
	doc  int    // offset of the document in the line
	ref  []byte // descriptor uid of an event, resource uid of a datum; aliases the line
	rows int    // rows of an event (1) or event_page
}

func isNumStart(c byte) bool { return isDigit(c) || c == '-' || c == 'N' || c == 'I' }

// seqNum checks that the number at b[i] is a seq_num the event decoder takes (an integer, or a
// float with an integral value that int64 holds).
func seqNum(b []byte, i int) error {
	if !isNumStart(b[i]) {
		return errors.New(`key "seq_num": want integer`)
	}
	if j := digits(b, i); j > i && j-i <= 18 && (j == len(b) || b[j] != '.' && b[j] != 'e' && b[j] != 'E') {
		return nil // the common case: a plain integer that int64 holds
	}
	d := decoder{b: b, i: i}
	if _, err := d.integer(); err != nil {
		return fmt.Errorf(`key "seq_num": %w`, err)
	}
	return nil
}

// classify checks an event, event_page, datum or datum_page line without decoding it: the whole
// line's syntax (scanValue, nesting bounded as the decoder bounds it), the keys that must be
// there, with values of the types the decoder takes (numbers for times, integers for seq_nums,
// a page's columns lists of a value per row). The index counts the rows of the lines it
// accepts and skips the others, with one log line; EventPages skips every line its decoder
// fails on and classify rejects, and the decoder fails on every line classify rejects, so the
// two agree on row numbers and a bad line costs that line only. Other kinds come back with only
// kind and doc set.
func classify(line []byte) (lineInfo, error) {
	kind, doc, err := header(line)
	info := lineInfo{kind: kind, doc: doc}
	if err != nil {
		return info, err
	}
	var seen [3]bool // time, seq_num, data
	var datumID []byte
	ids, kwargs := -1, 0 // datum pages: how many datum_ids (-1: none), where datum_kwargs begins
	var seqAt int        // event pages: where the seq_num list begins
	var bodyBuf [3]body
	bodies := bodyBuf[:0] // event pages: where each data, timestamps and filled object begins
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
				if !list {
					if !isNumStart(c) {
						return errors.New(`key "time": want number`)
					}
					return nil
				}
				if c != '[' {
					return errors.New(`key "time": want list`)
				}
				n, err := eachElement(line, v, func(i int) error {
					if !isNumStart(line[i]) {
						return errors.New(`key "time": want a list of numbers`)
					}
					return nil
				})
				info.rows = n
				return err
			case "seq_num":
				seen[1] = true
				seqAt = v
				if !list {
					return seqNum(line, v)
				}
				if c != '[' {
					return errors.New(`key "seq_num": want list`)
				}
				_, err := eachElement(line, v, func(i int) error { return seqNum(line, i) })
				return err
			case "data", "timestamps", "filled":
				if c != '{' {
					return fmt.Errorf("key %q: want object", key) // the decoder takes nothing else
				}
				if key[0] == 'd' {
					seen[2] = true
				}
				if list { // every occurrence: the decoder reads every one
					bodies = append(bodies, body{v, partName(key)})
				}
			}
			return nil
		}
		if !list {
			info.rows = 1
		}
	case kindDatum, kindDatumPage:
		page := kind == kindDatumPage
		fn = func(key []byte, v, end int) error {
			switch string(key) {
			case "resource":
				if line[v] == '"' && bytes.IndexByte(line[v+1:end-1], '\\') < 0 {
					info.ref = line[v+1 : end-1]
				}
			case "datum_id":
				switch {
				case !page && line[v] != '"':
					return errors.New(`key "datum_id": want string`)
				case !page:
					datumID = line[v+1 : end-1]
				case line[v] != '[':
					return errors.New(`key "datum_id": want list`)
				default:
					n, err := eachElement(line, v, func(i int) error {
						if line[i] != '"' {
							return errors.New(`key "datum_id": want a list of strings`)
						}
						return nil
					})
					ids = n
					return err
				}
			case "datum_kwargs":
				kwargs = v
			}
			return nil
		}
	default:
		return info, nil
	}
	// The decoder counts the document as one level: values may nest one less.
	end, err := eachMember(line, doc, maxDepth-1, fn)
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
			if err := checkPage(line, info.rows, seqAt, bodies); err != nil {
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
		switch {
		case info.ref == nil:
			return info, errors.New(`missing key "resource"`)
		case datumID == nil:
			return info, errors.New(`missing key "datum_id"`)
		}
	case kindDatumPage:
		switch {
		case info.ref == nil:
			return info, errors.New(`missing key "resource"`)
		case ids < 0:
			return info, errors.New(`missing key "datum_id"`)
		}
		if kwargs > 0 && line[kwargs] == '{' {
			_, err := eachMember(line, kwargs, maxDepth-2, func(key []byte, v, _ int) error {
				if line[v] != '[' {
					return fmt.Errorf("datum_kwargs %q: want list", key)
				}
				if n, _ := countElements(line, v); n != ids {
					return fmt.Errorf("datum_kwargs %q: column of %d values in a page of %d rows", key, n, ids)
				}
				return nil
			})
			if err != nil {
				return info, err
			}
		}
	}
	return info, nil
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

// body is where one data, timestamps or filled object of an event page begins.
type body struct {
	at   int
	part string
}

func partName(key []byte) string {
	switch key[0] {
	case 'd':
		return "data"
	case 't':
		return "timestamps"
	}
	return "filled"
}

// checkPage checks what the event decoder needs of an event page beyond its outline: as many
// seq_nums as times, and every column of every data, timestamps and filled object a list of
// that many values (an empty column in a page of rows is ragged too, as in msgpack). The index
// skips a page that fails, and so does every read (the decoder checks the same), so that a
// ragged page costs that page only, with one log line, never the stream.
func checkPage(line []byte, rows, seq int, bodies []body) error {
	if n, err := countElements(line, seq); err != nil || n != rows {
		return fmt.Errorf("%d seq_num values for %d times", n, rows)
	}
	for _, b := range bodies {
		_, err := eachMember(line, b.at, maxDepth-2, func(key []byte, v, _ int) error {
			if line[v] != '[' {
				return fmt.Errorf("%s %q: want list", b.part, key)
			}
			if n, err := countElements(line, v); err != nil || n != rows {
				return fmt.Errorf("%s %q has %d values in a page of %d rows", b.part, key, n, rows)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
