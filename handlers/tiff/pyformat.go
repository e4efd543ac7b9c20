package tiff

import (
	"fmt"
	"strconv"
	"strings"
)

// PyFormat is Python's printf-style formatting, template % tuple(args), for the conversions
// file-name templates use: %s, %r, %d, %i, %u, %x, %X, %o and %%, with flags (-, +, space, 0,
// #), width and precision ("%5.5d", "%04d", "%s%s_%6.6d.tiff"). Like Python it fails when
// the template converts fewer or more values than given, or %d meets a string.
func PyFormat(template string, args ...any) (string, error) {
	var b strings.Builder
	next := 0
	s := template
	for {
		i := strings.IndexByte(s, '%')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		s = s[i+1:]
		if s == "" {
			return "", fmt.Errorf("template %q: incomplete format", template)
		}
		if s[0] == '%' {
			b.WriteByte('%')
			s = s[1:]
			continue
		}
		if s[0] == '(' {
			return "", fmt.Errorf("template %q: mapping keys are not supported", template)
		}
		var sp spec
		for len(s) > 0 && strings.IndexByte("-+ 0#", s[0]) >= 0 {
			switch s[0] {
			case '-':
				sp.left = true
			case '+':
				sp.plus = true
			case ' ':
				sp.space = true
			case '0':
				sp.zero = true
			case '#':
				sp.alt = true
			}
			s = s[1:]
		}
		var err error
		if sp.width, s, err = number(s, args, &next, template); err != nil {
			return "", err
		}
		sp.prec = -1
		if len(s) > 0 && s[0] == '.' {
			if sp.prec, s, err = number(s[1:], args, &next, template); err != nil {
				return "", err
			}
		}
		for len(s) > 0 && strings.IndexByte("hlL", s[0]) >= 0 {
			s = s[1:] // length modifiers, ignored by Python
		}
		if s == "" {
			return "", fmt.Errorf("template %q: incomplete format", template)
		}
		verb := s[0]
		s = s[1:]
		if next >= len(args) {
			return "", fmt.Errorf("template %q: not enough arguments for format string (%d given)", template, len(args))
		}
		out, err := sp.format(verb, args[next])
		if err != nil {
			return "", fmt.Errorf("template %q: %w", template, err)
		}
		next++
		b.WriteString(out)
	}
	if next != len(args) {
		return "", fmt.Errorf("template %q: not all arguments converted during string formatting (%d of %d)", template, next, len(args))
	}
	return b.String(), nil
}

type spec struct {
	left, plus, space, zero, alt bool
	width, prec                  int
}

// number reads a width or precision: digits, or * taking the next argument.
func number(s string, args []any, next *int, template string) (int, string, error) {
	if len(s) > 0 && s[0] == '*' {
		if *next >= len(args) {
			return 0, s, fmt.Errorf("template %q: not enough arguments for format string", template)
		}
		n, ok := asInt(args[*next])
		if !ok {
			return 0, s, fmt.Errorf("template %q: * wants int", template)
		}
		*next++
		return int(n), s[1:], nil
	}
	j := 0
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == 0 {
		return 0, s, nil
	}
	n, err := strconv.Atoi(s[:j])
	if err != nil || n > 1<<16 {
		return 0, s, fmt.Errorf("template %q: width or precision %q too big", template, s[:j])
	}
	return n, s[j:], nil
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func (sp spec) format(verb byte, arg any) (string, error) {
	switch verb {
	case 's', 'r', 'a':
		var s string
		switch x := arg.(type) {
		case string:
			s = x
			if verb != 's' {
				s = pyRepr(x)
			}
		default:
			n, ok := asInt(arg)
			if !ok {
				return "", fmt.Errorf("%%%c of %T is not supported", verb, arg)
			}
			s = strconv.FormatInt(n, 10)
			if _, isBool := arg.(bool); isBool {
				s = map[bool]string{true: "True", false: "False"}[arg.(bool)]
			}
		}
		if sp.prec >= 0 && sp.prec < len([]rune(s)) {
			s = string([]rune(s)[:sp.prec])
		}
		return sp.pad(s, "", false), nil
	case 'd', 'i', 'u', 'x', 'X', 'o':
		n, ok := asInt(arg)
		if !ok {
			if f, isF := arg.(float64); isF && (verb == 'd' || verb == 'i' || verb == 'u') {
				n, ok = int64(f), true // Python truncates a float for %d
			}
		}
		if !ok {
			return "", fmt.Errorf("%%%c format: a real number is required, not %T", verb, arg)
		}
		neg := n < 0
		u := uint64(n)
		if neg {
			u = uint64(-n)
		}
		var digits, prefix string
		switch verb {
		case 'x':
			digits, prefix = strconv.FormatUint(u, 16), "0x"
		case 'X':
			digits, prefix = strings.ToUpper(strconv.FormatUint(u, 16)), "0X"
		case 'o':
			digits, prefix = strconv.FormatUint(u, 8), "0o"
		default:
			digits = strconv.FormatUint(u, 10)
		}
		if !sp.alt {
			prefix = ""
		}
		if sp.prec > len(digits) {
			digits = strings.Repeat("0", sp.prec-len(digits)) + digits
		}
		sign := ""
		switch {
		case neg:
			sign = "-"
		case sp.plus:
			sign = "+"
		case sp.space:
			sign = " "
		}
		return sp.pad(digits, sign+prefix, true), nil
	}
	return "", fmt.Errorf("conversion %%%c is not supported", verb)
}

// pad applies the width: left-justified with spaces, or right-justified with zeros (after
// the sign, numbers only) or spaces.
func (sp spec) pad(body, sign string, numeric bool) string {
	n := len([]rune(body)) + len(sign)
	if n >= sp.width {
		return sign + body
	}
	fill := sp.width - n
	switch {
	case sp.left:
		return sign + body + strings.Repeat(" ", fill)
	case sp.zero && numeric:
		return sign + strings.Repeat("0", fill) + body
	}
	return strings.Repeat(" ", fill) + sign + body
}

// pyRepr is Python's repr of a str, for the plain ASCII file names it is used on.
func pyRepr(s string) string {
	q := "'"
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		q = `"`
	}
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\t", `\t`, "\r", `\r`)
	s = r.Replace(s)
	if q == "'" {
		s = strings.ReplaceAll(s, "'", `\'`)
	}
	return q + s + q
}
