package config

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// v0Config is a databroker 0.x config file, ~/.config/databroker/NAME.yml.
type v0Config struct {
	Metadatastore yaml.Node             `yaml:"metadatastore"`
	Assets        yaml.Node             `yaml:"assets"`
	Handlers      map[string]handlerRef `yaml:"handlers"`
	RootMap       map[string]string     `yaml:"root_map"`
	Transforms    yaml.Node             `yaml:"transforms"` // read by databroker 1.x's _from_v0_config
}

// v0Store is the metadatastore or assets section.
type v0Store struct {
	Module string  `yaml:"module"`
	Class  string  `yaml:"class"`
	Config v0Mongo `yaml:"config"`
}

// v0Mongo is a section's config, as databroker's _get_mongo_database reads it.
type v0Mongo struct {
	Host       string `yaml:"host"`
	Port       string `yaml:"port"`
	Database   string `yaml:"database"`
	URI        string `yaml:"uri"`
	User       string `yaml:"mongo_user"`
	Password   string `yaml:"mongo_pwd"`
	AuthSource string `yaml:"authsource"`
}

// The modules of the MongoDB stores, which databroker 1.x still reads from a 0.x config
// (databroker.v1._from_v0_config); metadatastore.mds and filestore.fs are their names
// before they moved into databroker.
var (
	v0MetadataModules = map[string]bool{"databroker.headersource.mongo": true, "metadatastore.mds": true}
	v0AssetModules    = map[string]bool{"databroker.assets.mongo": true, "filestore.fs": true}
)

// v0Source translates a databroker 0.x config; its name is the file's stem.
func v0Source(file string, root *yaml.Node) (Source, error) {
	name := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	fail := func(line int, err error) (Source, error) {
		return Source{}, &FileError{File: file, Line: line, Source: name, Err: err}
	}
	var c v0Config
	if err := root.Decode(&c); err != nil {
		return Source{}, yamlError(file, name, err)
	}
	src := Source{Name: name, File: file, Kind: MongoNormalized}
	mds, err := v0Section(file, name, "metadatastore", &c.Metadatastore, v0MetadataModules)
	if err != nil {
		return Source{}, err
	}
	src.Driver = mds.Module + "." + mds.Class
	if mds.Module == "" {
		src.Driver = "databroker 0.x config"
	}
	if src.MetadataURI, err = v0URI(mds.Config); err != nil {
		return fail(c.Metadatastore.Line, fmt.Errorf("metadatastore: %w", err))
	}
	if c.Assets.Kind == 0 {
		return fail(root.Line, errors.New("no assets section: databroker needs the asset registry's database"))
	}
	assets, err := v0Section(file, name, "assets", &c.Assets, v0AssetModules)
	if err != nil {
		return Source{}, err
	}
	if src.AssetURI, err = v0URI(assets.Config); err != nil {
		return fail(c.Assets.Line, fmt.Errorf("assets: %w", err))
	}
	src.setRootMap(filepath.Dir(file), c.RootMap)
	reg := map[string]string{}
	for spec, class := range c.Handlers {
		reg[spec] = string(class)
	}
	src.setHandlers(reg)
	src.setTransforms("transforms", &c.Transforms)
	return src, nil
}

// v0Section decodes the metadatastore or assets section and checks that it is a MongoDB
// store; any other store (sqlite, HDF5, a server) gives an error wrapping ErrSkipped.
func v0Section(file, name, what string, n *yaml.Node, mongoModules map[string]bool) (v0Store, error) {
	var s v0Store
	if n.Kind != yaml.MappingNode {
		return s, &FileError{File: file, Line: n.Line, Source: name, Err: fmt.Errorf("%s: want a mapping with module, class and config", what)}
	}
	if err := n.Decode(&s); err != nil {
		return s, yamlError(file, name, err)
	}
	if s.Module != "" && !mongoModules[s.Module] {
		return s, &FileError{File: file, Line: keyLine(n, "module"), Source: name,
			Err: fmt.Errorf("%s module %s is not a MongoDB store; brokerfs reads 0.x configs of MongoDB stores: %w", what, s.Module, ErrSkipped)}
	}
	return s, nil
}

// v0URI returns the MongoDB URI of a 0.x section's config, naming its database, as
// databroker's _get_mongo_database connects: uri, or host and port (and the legacy
// mongo_user and mongo_pwd), then the database named by database.
func v0URI(c v0Mongo) (string, error) {
	if c.URI != "" && (c.Host != "" || c.Port != "") {
		return "", errors.New("config defines both uri and host/port; databroker refuses that too")
	}
	if c.Database == "" {
		return "", errors.New("config.database is missing")
	}
	if c.URI == "" && isMongoURI(c.Host) { // pymongo takes a URI as the host
		c.URI, c.Host = c.Host, ""
	}
	if c.URI != "" {
		if !isMongoURI(c.URI) {
			return "", fmt.Errorf("config.uri %s is not a mongodb:// URI", c.URI)
		}
		return withDatabase(c.URI, c.Database, c.AuthSource), nil
	}
	host := c.Host
	if host == "" {
		host = "localhost" // pymongo's default
	}
	if c.Port != "" {
		host += ":" + c.Port
	}
	var user string
	if c.User != "" && c.Password != "" {
		user = url.UserPassword(c.User, c.Password).String() + "@"
	}
	u := "mongodb://" + user + host + "/" + url.PathEscape(c.Database)
	if c.AuthSource != "" {
		u += "?authSource=" + url.QueryEscape(c.AuthSource)
	}
	return u, nil
}

func isMongoURI(s string) bool {
	return strings.HasPrefix(s, "mongodb://") || strings.HasPrefix(s, "mongodb+srv://")
}

// splitURI splits a MongoDB URI into what precedes its database path (scheme, user
// information, hosts), the database, and the options after '?'. It works on URIs with
// several hosts, which url.Parse refuses.
func splitURI(uri string) (base, database, query string) {
	s, query, _ := strings.Cut(uri, "?")
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	}
	hosts := start
	if at := strings.LastIndexByte(s[start:], '@'); at >= 0 {
		hosts = start + at + 1
	}
	if slash := strings.IndexByte(s[hosts:], '/'); slash >= 0 {
		return s[:hosts+slash], s[hosts+slash+1:], query
	}
	return s, "", query
}

// withDatabase returns uri with database as its path. databroker reads config.database
// whatever the URI's path says, but in a URI with credentials that path is also the
// database to authenticate against: when it names another database, it moves to
// authSource, so that the translated URI authenticates as databroker's did.
func withDatabase(uri, database, authSource string) string {
	base, path, query := splitURI(uri)
	var params []string
	hasAuthSource := false
	for _, p := range strings.Split(query, "&") {
		if p == "" {
			continue
		}
		if k, _, _ := strings.Cut(p, "="); strings.EqualFold(k, "authSource") {
			hasAuthSource = true
		}
		params = append(params, p)
	}
	credentials := strings.Contains(base[strings.Index(base, "://")+3:], "@")
	switch {
	case hasAuthSource:
	case authSource != "":
		params = append(params, "authSource="+url.QueryEscape(authSource))
	case credentials && path != "" && path != database:
		params = append(params, "authSource="+path)
	}
	out := base + "/" + url.PathEscape(database)
	if len(params) > 0 {
		out += "?" + strings.Join(params, "&")
	}
	return out
}
