package cache

import "errors"

// PutLater stores an entry of no files holding meta under key, soon, in the background (after
// the same delay as an entry's sync), so that the caller does not wait for the index: a run's
// documents, kept so that the next mount opens the run without reading its file. A failure
// (cache full, directory unavailable) is logged at debug level: such an entry is an
// optimisation. Lookup by this Store finds the entry at once (its Meta; no files); other
// processes once it is stored. Close stores those queued before it; when many are queued,
// PutLater stores at once.
func (s *Store) PutLater(key string, meta []byte) {
	if s.isClosed() || s.queuePut(key, meta) {
		return
	}
	if err := s.put(key, meta); err != nil && !errors.Is(err, ErrClosed) {
		s.log.Debug("cache: store entry", "err", err)
	}
}

func (s *Store) put(key string, meta []byte) error {
	b, err := s.Build(key)
	if err != nil {
		return err
	}
	defer b.Abort()
	if err := b.Reserve(int64(len(meta))); err != nil {
		return err
	}
	_, err = b.Commit(meta)
	return err
}
