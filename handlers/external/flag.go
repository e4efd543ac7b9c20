package external

import (
	"fmt"
	"strings"
)

// ParseFlag parses the value of --handler SPEC=COMMAND: the spec, and the command split into
// words as a POSIX shell splits them (single and double quotes, backslash escapes; no
// variables, globs or redirections).
func ParseFlag(s string) (spec string, command []string, err error) {
	spec, cmd, ok := strings.Cut(s, "=")
	spec = strings.TrimSpace(spec)
	if !ok || spec == "" {
		return "", nil, fmt.Errorf("--handler %q: want SPEC=COMMAND", s)
	}
	command, err = splitWords(cmd)
	if err != nil {
		return "", nil, fmt.Errorf("--handler %q: %w", s, err)
	}
	if len(command) == 0 {
		return "", nil, fmt.Errorf("--handler %q: empty command", s)
	}
	return spec, command, nil
}

func splitWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("trailing backslash")
			}
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote")
			}
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}
