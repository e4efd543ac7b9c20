package memory_test

import (
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/memory"
)

func TestContract(t *testing.T) {
	catalogtest.Suite(t, func(t *testing.T, runs [][]catalog.Document) catalog.Catalog {
		c, err := memory.New(runs...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}
