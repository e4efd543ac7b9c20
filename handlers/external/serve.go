package external

import (
	"context"
	"errors"
	"fmt"

	"github.com/brokerfs/brokerfs/helperproc"
)

// errClosed is the error of a call to a closed handler.
var errClosed = helperproc.ErrClosed

// serve makes one call to the resource's server process (package helperproc: started at the
// first call; killed, and started again by the next call, when it dies, breaks the protocol
// or times out).
func (h *handler) serve(ctx context.Context, req []byte) (reply, error) {
	r, err := h.proc.Call(ctx, req)
	var answer *helperproc.AnswerError
	switch {
	case err == nil:
		return reply{body: r.Body, unsupported: r.Unsupported}, nil
	case errors.As(err, &answer):
		return reply{}, answerError(answer.Msg, answer.Exit)
	case errors.Is(err, helperproc.ErrClosed), ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return reply{}, err
	}
	return reply{}, fmt.Errorf("%w: %w", err, ErrHandler)
}
