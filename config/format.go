package config

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Format writes the table of `brokerfs catalogs`: NAME, KIND, WHERE (path globs, or
// database URIs with credentials redacted) and FILE, one row per source in the order given,
// then each source's warnings.
func Format(w io.Writer, sources []Source) error {
	if len(sources) == 0 {
		_, err := fmt.Fprintln(w, "no catalogs found")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tWHERE\tFILE")
	for _, s := range sources {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.Kind, s.Where(), location(s.File, s.Line))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range sources {
		for _, warn := range s.Warnings {
			if _, err := fmt.Fprintf(w, "warning: %s: %s\n", s.Name, RedactText(warn)); err != nil {
				return err
			}
		}
	}
	return nil
}
