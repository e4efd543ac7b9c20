package mongotest_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/brokerfs/brokerfs/catalog/mongo/mongotest"
)

// TestRestartKeepsData writes through the server, restarts it and reads the data back on
// the same URI.
func TestRestartKeepsData(t *testing.T) {
	srv := mongotest.Start(t)
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI("t")).SetTimeout(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	coll := client.Database("t").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "x", Value: int32(1)}}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := client.Ping(ctx, nil); err == nil {
		t.Error("ping of a stopped server: no error")
	}
	srv.Stop() // stopping twice does nothing
	srv.Restart()
	var n int64
	deadline := time.Now().Add(10 * time.Second)
	for n, err = coll.CountDocuments(ctx, bson.D{}); err != nil && time.Now().Before(deadline); n, err = coll.CountDocuments(ctx, bson.D{}) {
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || n != 1 {
		t.Errorf("after restart: %d documents, %v; want 1", n, err)
	}
}
