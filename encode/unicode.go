package encode

import (
	"encoding/binary"
	"unicode/utf8"
)

// PutUnicode writes s into dst as one NumPy "<U{width}" element: its code points as UTF-32LE,
// zero padded. dst must hold at least 4*width bytes; only those are written.
//
// A string of more than width code points is truncated to its first width code points, which
// is what NumPy does when it assigns a longer string into a fixed-width array; size the dtype
// with the longest UnicodeLen to avoid it. Invalid UTF-8 bytes become U+FFFD, one per byte,
// matching UnicodeLen. Note that NumPy strips trailing NUL code points when it reads a
// string, so "a\x00" reads back as "a".
func PutUnicode(dst []byte, s string, width int) {
	dst = dst[:4*width]
	i := 0
	for _, r := range s {
		if i == len(dst) {
			break
		}
		binary.LittleEndian.PutUint32(dst[i:], uint32(r))
		i += 4
	}
	clear(dst[i:])
}

// UnicodeLen is the number of code points of s, the width PutUnicode needs for it. Each
// invalid UTF-8 byte counts as one (it becomes one U+FFFD).
func UnicodeLen(s string) int {
	return utf8.RuneCountInString(s)
}

// appendUTF32 appends the UTF-32 string b (without its trailing NULs, as NumPy reads it) to
// dst as UTF-8. Code points that UTF-8 cannot carry (surrogates, > U+10FFFF) become U+FFFD.
func appendUTF32(dst, b []byte, big bool) []byte {
	b = trimNULs(b)
	for i := 0; i+4 <= len(b); i += 4 {
		dst = utf8.AppendRune(dst, rune(loadUint(b[i:], 4, big)))
	}
	return dst
}

// trimNULs drops the trailing zero code points of a UTF-32 string.
func trimNULs(b []byte) []byte {
	for len(b) >= 4 && b[len(b)-1]|b[len(b)-2]|b[len(b)-3]|b[len(b)-4] == 0 {
		b = b[:len(b)-4]
	}
	return b
}
