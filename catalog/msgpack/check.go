package msgpack

// The body check: what the event decoder needs of a document's data, timestamps and filled
// values, tested without decoding them. The index runs it on every event document it does not
// read through a layout, and so does every read (scanEvent), so that a document the decoder
// would fail on (a ragged page, a broken numpy column, values nested too deeply: a bit flip
// makes any of them) is skipped by both, with one log line from the index, instead of failing
// every read of its stream.

import (
	"errors"
	"fmt"
)

// partNames are the body parts of an event document, in the order checkBody checks them (the
// bit of part i in evHeader.checked is 1<<i).
var partNames = [...]string{"data", "timestamps", "filled"}

// checkBody checks the body parts of an event document whose header h is good. Problems are
// *invalidError; short and corrupt data pass through. Parts the walk over the document checked
// already (checkAt), or decoded in a way that implies the check (pageDecoder.part), are not
// walked again.
func checkBody(b []byte, h *evHeader) error {
	for i, at := range [...]int{h.data, h.ts, h.filled} {
		if at < 0 || !isMap(b[at]) || h.checked&(1<<i) != 0 {
			continue // the header check fails data, timestamps and filled that are not maps
		}
		err := h.partErr[i]
		if err == nil {
			_, err = checkPart(b, at, partNames[i], h)
		}
		if err != nil {
			if errors.Is(err, errShort) || isCorrupt(err) && !isDepth(err) {
				return err
			}
			return invalid("%s: %v", partNames[i], err)
		}
	}
	return nil
}

// checkAt is checkBody's check of the body part at pos (a map), made by the walk over the
// document as it reaches the part once the rows are known, so that its values are read once:
// it returns the end of the part. A part that fails is passed over (skip) and its error kept
// for checkBody, which reports the parts' problems in its own order and after the header's.
func (h *evHeader) checkAt(b []byte, pos int) (int, error) {
	i := 0
	switch pos {
	case h.ts:
		i = 1
	case h.filled:
		i = 2
	}
	end, err := checkPart(b, pos, partNames[i], h)
	switch {
	case err == nil:
		h.checked |= 1 << i
		return end, nil
	case errors.Is(err, errShort):
		return end, err
	}
	h.partErr[i] = err
	return skip(b, pos)
}

// checkPart checks one body map: each of its values as the decoder would read it. It returns
// the end of the map.
func checkPart(b []byte, pos int, name string, h *evHeader) (int, error) {
	n, pos, err := mapLen(b, pos)
	if err != nil {
		return pos, err
	}
	for range n {
		k, next, err := str(b, pos)
		if err != nil {
			// A key that is not a string is passed over by the decoder.
			if pos, err = skipPair(b, pos, err); err != nil {
				return pos, err
			}
			continue
		}
		pos = next
		switch {
		case h.single && name == "timestamps":
			pos, err = skip(b, pos) // any value reads (as NaN or 0)
		case h.single:
			pos, err = checkDepth(b, pos, 0)
		default:
			pos, err = checkColumnOf(b, pos, name, h.rows)
		}
		if err != nil {
			if errors.Is(err, errShort) {
				return pos, err
			}
			return pos, fmt.Errorf("%q: %w", k, err)
		}
	}
	return pos, nil
}

// checkColumnOf checks a page column of rows values: a list of that many, each value within
// the nesting bound, or a numpy array the decoder takes (one-dimensional for timestamps).
func checkColumnOf(b []byte, pos int, name string, rows int) (int, error) {
	if pos >= len(b) {
		return pos, errShort
	}
	if isMap(b[pos]) {
		var nh ndHeader
		ok, err := parseNumpy(b, pos, &nh)
		if err != nil {
			return pos, err
		}
		if !ok || !nh.nd || nh.ndim == 0 || nh.shape[0] != rows || !ndValid(&nh) || (name == "timestamps" && nh.ndim != 1) {
			return pos, fmt.Errorf("want a list or array of %d rows, have %s", rows, typeName(b, pos))
		}
		return nh.end, nil
	}
	n, p, err := arrayLen(b, pos)
	if err != nil {
		return pos, err
	}
	if n != rows {
		return pos, fmt.Errorf("column of %d values in a page of %d rows", n, rows)
	}
	for i := 0; i < n; i++ {
		for i < n && p+9 <= len(b) && b[p] == 0xcb {
			p, i = p+9, i+1 // a run of float64s
		}
		if i == n {
			break
		}
		if p < len(b) {
			if s := scalarSize[b[p]]; s != 0 {
				p += int(s) // a scalar: nothing to check (past the end: short, below)
				continue
			}
		}
		if name == "timestamps" {
			p, err = skip(b, p)
		} else {
			p, err = checkDepth(b, p, 0)
		}
		if err != nil {
			return p, err
		}
	}
	if p > len(b) {
		return p, errShort
	}
	return p, nil
}

// ndValid reports whether ndValue would make a value of a parsed msgpack-numpy header, without
// making it.
func ndValid(h *ndHeader) bool {
	_, _, size, ok := dtype(h.typ)
	if !ok {
		return false
	}
	count := 1
	for _, d := range h.shape[:h.ndim] {
		if d == 0 {
			count = 0
			break
		}
		if count > len(h.data)/d {
			return false
		}
		count *= d
	}
	return count*size == len(h.data)
}

// errDepth is the message value gives for values nested beyond maxDepth.
const errDepth = "values nested too deeply"

func isDepth(err error) bool {
	var ce *corruptError
	return errors.As(err, &ce) && ce.msg == errDepth
}

// checkDepth returns the end of the value at pos, failing as value would when it nests deeper
// than maxDepth (depth is the value's own).
func checkDepth(b []byte, pos, depth int) (int, error) {
	if depth > maxDepth {
		return pos, corrupt(pos, errDepth)
	}
	if pos >= len(b) {
		return pos, errShort
	}
	c := b[pos]
	if s := int(scalarSize[c]); s != 0 {
		if pos+s > len(b) {
			return pos + s, errShort
		}
		return pos + s, nil
	}
	switch {
	case isArray(c):
		n, p, err := arrayLen(b, pos)
		if err != nil {
			return pos, err
		}
		if n > len(b)-p {
			return pos, errShort
		}
		for range n {
			if p, err = checkDepth(b, p, depth+1); err != nil {
				return p, err
			}
		}
		return p, nil
	case isMap(c):
		var nh ndHeader
		if ok, err := parseNumpy(b, pos, &nh); err != nil || ok {
			if err != nil {
				return pos, err
			}
			return nh.end, nil
		}
		n, p, err := mapLen(b, pos)
		if err != nil {
			return pos, err
		}
		if n > len(b)-p {
			return pos, errShort
		}
		for range n {
			if p, err = skip(b, p); err != nil { // keys never fail for depth
				return p, err
			}
			if p, err = checkDepth(b, p, depth+1); err != nil {
				return p, err
			}
		}
		return p, nil
	}
	return skip(b, pos)
}
