package catalog

import (
	"context"
	"fmt"
)

// Assembled is a whole run held in memory as generic documents, sorted by kind. It is the
// simplest Run: the in-memory backend serves it, and small-file backends may build one.
type Assembled struct {
	StartDoc  *Start
	StopDoc   *Stop // nil while the run is live
	Descs     []*Descriptor
	Events    map[string][]Document // descriptor uid -> event and event_page documents
	Res       []*Resource
	DatumDocs map[string][]Document // resource uid -> datum and datum_page documents
	all       []Document            // every valid document, in order
}

// Assemble sorts a run's documents, checking each. The first document must be the start.
// A malformed document other than the start is returned in bad and left out, so that one bad
// event does not hide the run; a bad start is an error.
func Assemble(docs []Document) (run *Assembled, bad []error, err error) {
	if len(docs) == 0 || docs[0].Name != "start" {
		return nil, nil, fmt.Errorf("run does not begin with a start document")
	}
	a := &Assembled{Events: map[string][]Document{}, DatumDocs: map[string][]Document{}, all: docs[:1:1]}
	if a.StartDoc, err = ParseStart(docs[0].Doc, AppendJSON(nil, docs[0].Doc)); err != nil {
		return nil, nil, fmt.Errorf("start: %w", err)
	}
	for i, d := range docs[1:] {
		if err := a.add(d); err != nil {
			bad = append(bad, fmt.Errorf("document %d (%s): %w", i+1, d.Name, err))
			continue
		}
		a.all = append(a.all, d)
	}
	return a, bad, nil
}

func (a *Assembled) add(d Document) error {
	switch d.Name {
	case "stop":
		s, err := ParseStop(d.Doc, AppendJSON(nil, d.Doc))
		if err != nil {
			return err
		}
		a.StopDoc = s
	case "descriptor":
		desc, err := ParseDescriptor(d.Doc, AppendJSON(nil, d.Doc))
		if err != nil {
			return err
		}
		a.Descs = append(a.Descs, desc)
	case "event", "event_page":
		id, err := needString(d.Doc, "descriptor")
		if err != nil {
			return err
		}
		var p EventPage
		p.Reset(id, 0)
		if d.Name == "event" {
			err = AppendEvent(&p, d.Doc, nil)
		} else {
			err = AppendEventPage(&p, d.Doc, nil)
		}
		if err != nil {
			return err
		}
		a.Events[id] = append(a.Events[id], d)
	case "resource":
		r, err := ParseResource(d.Doc, AppendJSON(nil, d.Doc))
		if err != nil {
			return err
		}
		a.Res = append(a.Res, r)
	case "datum", "datum_page":
		id, err := needString(d.Doc, "resource")
		if err != nil && d.Name == "datum" {
			// Legacy datums may lack "resource"; take it from the datum id.
			if did, e := needString(d.Doc, "datum_id"); e == nil {
				id, err = resourceOfDatum(did), nil
			}
		}
		if err != nil {
			return err
		}
		var p DatumPage
		if d.Name == "datum" {
			err = AppendDatum(&p, d.Doc)
		} else {
			err = AppendDatumPage(&p, d.Doc)
		}
		if err != nil {
			return err
		}
		a.DatumDocs[id] = append(a.DatumDocs[id], d)
	default:
		return fmt.Errorf("unknown document name %q", d.Name)
	}
	return nil
}

func resourceOfDatum(id string) string {
	for i := 0; i < len(id); i++ {
		if id[i] == '/' {
			return id[:i]
		}
	}
	return id
}

// Start implements Run.
func (a *Assembled) Start() *Start { return a.StartDoc }

// Stop implements Run.
func (a *Assembled) Stop(context.Context) (*Stop, error) {
	if a.StopDoc == nil {
		return nil, fmt.Errorf("stop of run %s: %w", a.StartDoc.UID, ErrNotFound)
	}
	return a.StopDoc, nil
}

// Descriptors implements Run.
func (a *Assembled) Descriptors(context.Context) ([]*Descriptor, error) { return a.Descs, nil }

// EventPages implements Run. Each stored document becomes one page.
func (a *Assembled) EventPages(ctx context.Context, descriptor string, from, to int, fields []string, fn func(*EventPage) error) error {
	var p EventPage
	row := 0
	for _, d := range a.Events[descriptor] {
		if err := ctx.Err(); err != nil {
			return err
		}
		if to >= 0 && row >= to {
			return nil
		}
		p.Reset(descriptor, row)
		var err error
		if d.Name == "event" {
			err = AppendEvent(&p, d.Doc, fields)
		} else {
			err = AppendEventPage(&p, d.Doc, fields)
		}
		if err != nil {
			return err
		}
		row += p.Len()
		if row <= from {
			continue
		}
		p.Trim()
		if err := fn(&p); err != nil {
			return err
		}
	}
	return nil
}

// Resources implements Run.
func (a *Assembled) Resources(context.Context) ([]*Resource, error) { return a.Res, nil }

// Datums implements Run.
func (a *Assembled) Datums(ctx context.Context, resource string, fn func(*DatumPage) error) error {
	for _, d := range a.DatumDocs[resource] {
		p := DatumPage{Resource: resource}
		var err error
		if d.Name == "datum" {
			err = AppendDatum(&p, d.Doc)
		} else {
			err = AppendDatumPage(&p, d.Doc)
		}
		if err != nil {
			return err
		}
		if err := fn(&p); err != nil {
			return err
		}
	}
	return nil
}

// Documents implements DocumentReader.
func (a *Assembled) Documents(ctx context.Context, fn func(Document) error) error {
	for _, d := range a.all {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(d); err != nil {
			return err
		}
	}
	return nil
}
