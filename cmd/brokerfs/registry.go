package main

import (
	"github.com/brokerfs/brokerfs/handlers"
)

// newRegistry composes the handler registry: the built-in handlers, then --handler
// SPEC=COMMAND external programs, which replace a built-in of the same spec.
func newRegistry(handlerCmds []string) (*handlers.Registry, error) {
	reg := handlers.NewRegistry()
	return reg, nil
}
