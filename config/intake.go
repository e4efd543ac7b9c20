package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/brokerfs/brokerfs/handlers"
)

// drivers maps the intake drivers of databroker's Bluesky catalogs, by entry-point name and
// by class path (databroker 1.x, and intake-bluesky before it moved into databroker), to the
// kind of store they read.
var drivers = map[string]Kind{
	"bluesky-msgpack-catalog":                                  Msgpack,
	"databroker._drivers.msgpack.BlueskyMsgpackCatalog":        Msgpack,
	"intake_bluesky.msgpack.BlueskyMsgpackCatalog":             Msgpack,
	"bluesky-jsonl-catalog":                                    JSONL,
	"databroker._drivers.jsonl.BlueskyJSONLCatalog":            JSONL,
	"intake_bluesky.jsonl.BlueskyJSONLCatalog":                 JSONL,
	"bluesky-mongo-normalized-catalog":                         MongoNormalized,
	"databroker._drivers.mongo_normalized.BlueskyMongoCatalog": MongoNormalized,
	"intake_bluesky.mongo_normalized.BlueskyMongoCatalog":      MongoNormalized,
	"bluesky-mongo-embedded-catalog":                           MongoEmbedded,
	"databroker._drivers.mongo_embedded.BlueskyMongoCatalog":   MongoEmbedded,
	"intake_bluesky.mongo_embedded.BlueskyMongoCatalog":        MongoEmbedded,
}

// driverKind returns the kind of store a driver reads, 0 for other drivers.
func driverKind(driver string) Kind {
	return drivers[strings.ReplaceAll(strings.TrimSpace(driver), ":", ".")]
}

// args each kind reads; ignoredArgs are databroker arguments brokerfs knowingly ignores.
var (
	commonArgs = []string{"root_map", "handler_registry", "transforms", "name"}
	kindArgs   = map[Kind][]string{
		Msgpack:         {"paths"},
		JSONL:           {"paths"},
		MongoNormalized: {"metadatastore_db", "asset_registry_db"},
		MongoEmbedded:   {"datastore_db"},
	}
	ignoredArgs = map[string]string{
		"query":        "args.query is ignored: brokerfs lists every run (use --query to filter)",
		"filler_class": "args.filler_class is ignored: brokerfs fills external data with its own handlers",
	}
)

// intakeEntry is one source of an intake catalog file.
type intakeEntry struct {
	Driver string `yaml:"driver"`
	Args   struct {
		Paths           stringList            `yaml:"paths"`
		MetadatastoreDB string                `yaml:"metadatastore_db"`
		AssetRegistryDB string                `yaml:"asset_registry_db"`
		DatastoreDB     string                `yaml:"datastore_db"`
		RootMap         map[string]string     `yaml:"root_map"`
		HandlerRegistry map[string]handlerRef `yaml:"handler_registry"`
		Transforms      yaml.Node             `yaml:"transforms"`
	} `yaml:"args"`
	Metadata struct {
		// RelativePaths are written by databroker-pack: args.paths relative to the file.
		RelativePaths stringList `yaml:"relative_paths"`
	} `yaml:"metadata"`
}

// stringList is a YAML string or list of strings (intake takes both for paths).
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*l = nil
		} else {
			*l = stringList{n.Value}
		}
		return nil
	case yaml.SequenceNode:
		var s []string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*l = s
		return nil
	}
	return typeError(n, "want a string or a list of strings")
}

// handlerRef is a handler's Python class: a class path ("pkg.mod.Class", as intake's
// handler_registry has it) or {module: pkg.mod, class: Class} (as databroker 0.x has it).
type handlerRef string

func (h *handlerRef) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag != "!!null" {
			*h = handlerRef(n.Value)
		}
		return nil
	case yaml.MappingNode:
		var m struct {
			Module string `yaml:"module"`
			Class  string `yaml:"class"`
		}
		if err := n.Decode(&m); err != nil {
			return err
		}
		if m.Module == "" || m.Class == "" {
			return typeError(n, "handler: want both module and class")
		}
		*h = handlerRef(m.Module + "." + m.Class)
		return nil
	}
	return typeError(n, "handler: want a class path or {module: ..., class: ...}")
}

// entry is a source's name and definition, in file order.
type entry struct {
	name string
	line int
	node *yaml.Node
}

// intakeEntries lists the sources of an intake file's "sources" mapping, in file order.
func intakeEntries(file string, sources *yaml.Node) ([]entry, error) {
	if sources.Kind != yaml.MappingNode {
		if sources.Kind == yaml.ScalarNode && sources.Tag == "!!null" {
			return nil, nil
		}
		return nil, &FileError{File: file, Line: sources.Line, Err: errors.New("sources: want a mapping of source names to sources")}
	}
	var out []entry
	first := map[string]int{}
	for i := 0; i+1 < len(sources.Content); i += 2 {
		k, v := sources.Content[i], deref(sources.Content[i+1])
		if l, dup := first[k.Value]; dup {
			return nil, &FileError{File: file, Line: k.Line, Err: fmt.Errorf("source %q defined again (first at line %d)", k.Value, l)}
		}
		first[k.Value] = k.Line
		out = append(out, entry{name: k.Value, line: k.Line, node: v})
	}
	return out, nil
}

// intakeSource translates one intake source. A source of another driver gives an error that
// wraps ErrSkipped.
func intakeSource(file string, e entry, env Env) (Source, error) {
	dir := filepath.Dir(file)
	src := Source{Name: e.name, File: file, Line: e.line}
	fail := func(line int, err error) (Source, error) {
		if line == 0 {
			line = e.line
		}
		return Source{}, &FileError{File: file, Line: line, Source: e.name, Err: err}
	}
	if e.node.Kind != yaml.MappingNode {
		return fail(e.node.Line, errors.New("want a mapping with driver and args"))
	}
	expandTemplates(e.node, dir, env.Getenv, src.warn)
	var ent intakeEntry
	if err := e.node.Decode(&ent); err != nil {
		return Source{}, yamlError(file, e.name, err)
	}
	src.Driver = ent.Driver
	if ent.Driver == "" {
		return fail(0, errors.New("no driver"))
	}
	src.Kind = driverKind(ent.Driver)
	if src.Kind == 0 {
		return fail(keyLine(e.node, "driver"), fmt.Errorf("driver %s is not a Bluesky catalog driver brokerfs reads: %w", ent.Driver, ErrSkipped))
	}
	args := lookup(e.node, "args")
	a := ent.Args
	var err error
	switch src.Kind {
	case Msgpack, JSONL:
		paths := ent.Metadata.RelativePaths // databroker-pack's: they win over args.paths
		if len(paths) == 0 {
			paths = a.Paths
		}
		if len(paths) == 0 {
			return fail(keyLine(args, "paths"), errors.New("args.paths is missing or empty: no files to read"))
		}
		for _, p := range paths {
			src.Paths = append(src.Paths, resolve(dir, p))
		}
	case MongoNormalized:
		if src.MetadataURI, err = databaseURI("metadatastore_db", a.MetadatastoreDB); err != nil {
			return fail(keyLine(args, "metadatastore_db"), err)
		}
		if src.AssetURI, err = databaseURI("asset_registry_db", a.AssetRegistryDB); err != nil {
			return fail(keyLine(args, "asset_registry_db"), err)
		}
	case MongoEmbedded:
		if src.EmbeddedURI, err = databaseURI("datastore_db", a.DatastoreDB); err != nil {
			return fail(keyLine(args, "datastore_db"), err)
		}
	}
	src.setRootMap(dir, a.RootMap)
	reg := map[string]string{}
	for spec, class := range a.HandlerRegistry {
		reg[spec] = string(class)
	}
	src.setHandlers(reg)
	src.setTransforms("args.transforms", &a.Transforms)
	src.checkArgs(args)
	return src, nil
}

// transformKinds are the documents databroker's transforms apply to that brokerfs runs.
var transformKinds = map[string]bool{"start": true, "stop": true, "descriptor": true, "resource": true}

// setTransforms sets Transforms from the transforms mapping {kind: "package.module.function"}
// (named key in warnings: args.transforms of an intake source, transforms of a 0.x config),
// warning of what brokerfs cannot run: other kinds (databroker 2's "datum") and values that
// are not import paths.
func (s *Source) setTransforms(key string, n *yaml.Node) {
	n = deref(n)
	switch {
	case n.Kind == 0 || n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return
	case n.Kind != yaml.MappingNode:
		s.warn(fmt.Sprintf("line %d: %s: want a mapping of document kinds to import paths; ignored", n.Line, key))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		switch {
		case !transformKinds[k.Value]:
			s.warn(fmt.Sprintf("line %d: %s.%s: brokerfs transforms start, stop, descriptor and resource documents only; ignored", k.Line, key, k.Value))
		case v.Kind != yaml.ScalarNode || v.Tag != "!!str" || v.Value == "":
			s.warn(fmt.Sprintf("line %d: %s.%s: want an import path package.module.function; ignored", k.Line, key, k.Value))
		default:
			if s.Transforms == nil {
				s.Transforms = map[string]string{}
			}
			s.Transforms[k.Value] = v.Value
		}
	}
}

// checkArgs warns of the args the source's kind does not read.
func (s *Source) checkArgs(args *yaml.Node) {
	if args == nil || args.Kind != yaml.MappingNode {
		return
	}
	known := map[string]bool{}
	for _, k := range append(append([]string{}, commonArgs...), kindArgs[s.Kind]...) {
		known[k] = true
	}
	var names []string
	for i := 0; i+1 < len(args.Content); i += 2 {
		names = append(names, args.Content[i].Value)
	}
	sort.Strings(names)
	for _, k := range names {
		switch {
		case known[k]:
		case ignoredArgs[k] != "":
			s.warn(ignoredArgs[k])
		default:
			s.warn(fmt.Sprintf("args.%s is not read by brokerfs for a %s catalog; ignored", k, s.Kind))
		}
	}
}

// setRootMap sets the root_map, relative values resolved against dir.
func (s *Source) setRootMap(dir string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s.RootMap = handlers.RootMap{}
	for _, k := range keys {
		v := m[k]
		if k == "" || v == "" {
			s.warn(fmt.Sprintf("root_map %q: %q has an empty side; ignored", k, v))
			continue
		}
		s.RootMap[k] = resolve(dir, v)
	}
}

// setHandlers sets Handlers from a registry {spec: Python class path}.
func (s *Source) setHandlers(reg map[string]string) {
	var warns []string
	s.Handlers, warns = mapHandlers(reg)
	for _, w := range warns {
		s.warn(w)
	}
}

// resolve makes a relative path absolute against dir, the configuration file's directory.
func resolve(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// databaseURI checks a MongoDB URI of an intake source: databroker requires the database in
// its path.
func databaseURI(arg, uri string) (string, error) {
	if uri == "" {
		return "", fmt.Errorf("args.%s is missing", arg)
	}
	if !isMongoURI(uri) {
		return "", fmt.Errorf("args.%s: %s is not a mongodb:// URI", arg, uri)
	}
	if _, db, _ := splitURI(uri); db == "" {
		return "", fmt.Errorf("args.%s: %s names no database (want mongodb://HOST/DATABASE)", arg, uri)
	}
	return uri, nil
}

// Intake expands Jinja2 templates in catalog files; these are the two used in practice.
var (
	templateExpr = regexp.MustCompile(`\{\{\s*(.*?)\s*\}\}`)
	envCall      = regexp.MustCompile(`^env\(\s*["']?([A-Za-z_][A-Za-z0-9_]*)["']?\s*\)$`)
)

// expandTemplates expands {{ CATALOG_DIR }} (the file's directory) and {{ env("NAME") }} in
// the string values under n, in place, and warns of other templates, which stay as written.
func expandTemplates(n *yaml.Node, dir string, getenv func(string) string, warn func(string)) {
	if n.Kind != yaml.ScalarNode {
		for _, c := range n.Content {
			expandTemplates(c, dir, getenv, warn)
		}
		return
	}
	if !strings.Contains(n.Value, "{{") {
		return
	}
	n.Value = templateExpr.ReplaceAllStringFunc(n.Value, func(t string) string {
		expr := templateExpr.FindStringSubmatch(t)[1]
		if expr == "CATALOG_DIR" {
			return dir
		}
		if m := envCall.FindStringSubmatch(expr); m != nil && getenv != nil {
			return getenv(m[1])
		}
		warn(fmt.Sprintf("line %d: template %s is not expanded", n.Line, t))
		return t
	})
}
