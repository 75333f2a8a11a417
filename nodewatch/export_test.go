package nodewatch

// CachedNodes lists the names in the watcher's informer cache, so a test
// against a real API server can check the field selector: the handlers
// ignore other nodes anyway, which would hide a missing selector.
func (w *Watcher) CachedNodes() []string { return w.informer.GetStore().ListKeys() }
