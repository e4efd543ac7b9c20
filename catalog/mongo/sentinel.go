package mongo

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// databroker's version sentinel: the asset database's collection "sentinel" holds
// {collection: "resource", version: 1} and {collection: "datum", version: 1}. Refusing a
// database without them stops a typo in a database name from silently serving (or, for
// writers, creating) an empty catalog.

// SentinelVersion is the asset database schema version brokerfs reads.
const SentinelVersion = 1

// SentinelCollection is the collection that holds the sentinel.
const SentinelCollection = "sentinel"

// sentinelFor lists the collections the sentinel versions.
var sentinelFor = []string{"resource", "datum"}

// Sentinel errors, wrapped with the database and the fix.
var (
	// ErrNoSentinel means the asset database has no version sentinel.
	ErrNoSentinel = errors.New("no version sentinel")
	// ErrSentinelVersion means the sentinel names another schema version.
	ErrSentinelVersion = errors.New("version sentinel mismatch")
	// ErrSentinelExists means InstallSentinel found a sentinel already there.
	ErrSentinelExists = errors.New("version sentinel already installed")
)

// CheckSentinel checks the version sentinel of the asset database uri names.
func CheckSentinel(ctx context.Context, uri string) (err error) {
	defer func() { err = scrub(err, uri) }()
	cn, err := connect(uri, oneShot)
	if err != nil {
		return err
	}
	defer cn.close(DefaultTimeout)
	return checkSentinel(ctx, cn)
}

func checkSentinel(ctx context.Context, cn *conn) error {
	cur, err := cn.db.Collection(SentinelCollection).Find(ctx,
		bson.D{{Key: "collection", Value: bson.D{{Key: "$in", Value: sentinelFor}}}}, options.Find().SetProjection(noID))
	if err != nil {
		return fmt.Errorf("check version sentinel of %s: %w", cn.name, err)
	}
	versions := map[string]bsoncore.Value{}
	for cur.Next(ctx) {
		name, _ := lookup(cur.Current, "collection")
		if s, ok := name.StringValueOK(); ok {
			versions[s], _ = lookup(cur.Current, "version")
		}
	}
	_ = cur.Close(context.WithoutCancel(ctx))
	if err := cur.Err(); err != nil {
		return fmt.Errorf("check version sentinel of %s: %w", cn.name, err)
	}
	for _, name := range sentinelFor {
		v, found := versions[name]
		if !found {
			return fmt.Errorf("asset database %s: %w for the %s collection (collection %q, document {collection: %q, version: %d}); "+
				"if this is the right database, install one with: brokerfs sentinel install %s",
				cn.name, ErrNoSentinel, name, SentinelCollection, name, SentinelVersion, cn.name)
		}
		n, ok := asInt(v)
		if ok && n == SentinelVersion {
			continue
		}
		have := "no version"
		switch {
		case ok:
			have = "version " + strconv.FormatInt(n, 10)
		case v.Type != 0:
			have = "version " + v.String()
		}
		return fmt.Errorf("asset database %s: %w: the %s collection has %s, brokerfs reads version %d",
			cn.name, ErrSentinelVersion, name, have, SentinelVersion)
	}
	return nil
}

// InstallSentinel installs a version sentinel in the asset database uri names. It refuses
// (ErrSentinelExists) when one is there, whatever its version, as databroker does.
func InstallSentinel(ctx context.Context, uri string, version int) (err error) {
	defer func() { err = scrub(err, uri) }()
	cn, err := connect(uri, oneShot)
	if err != nil {
		return err
	}
	defer cn.close(DefaultTimeout)
	coll := cn.db.Collection(SentinelCollection)
	for _, name := range sentinelFor {
		raw, err := coll.FindOne(ctx, bson.D{{Key: "collection", Value: name}}, options.FindOne().SetProjection(noID)).Raw()
		switch {
		case err == nil:
			js, _ := appendDocJSON(nil, raw)
			return fmt.Errorf("install version sentinel in %s: %w: %s", cn.name, ErrSentinelExists, js)
		case !errors.Is(err, mongo.ErrNoDocuments):
			return fmt.Errorf("install version sentinel in %s: %w", cn.name, err)
		}
	}
	for _, name := range sentinelFor {
		doc := bson.D{{Key: "collection", Value: name}, {Key: "version", Value: int32(version)}}
		if _, err := coll.InsertOne(ctx, doc); err != nil {
			return fmt.Errorf("install version sentinel in %s: %w", cn.name, err)
		}
	}
	return nil
}
