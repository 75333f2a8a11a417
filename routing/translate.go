package routing

// Translate turns a snapshot into a route table. It is pure: the result
// depends only on its arguments (not on their order), it does not modify
// them, and it neither panics nor stops on bad objects: each becomes a
// Problem and the rest is translated. It is a Translator's first call; a
// caller translating again and again (the data client) keeps a Translator
// and gets the same tables for less.
func Translate(s *Snapshot, o Options) Table {
	return NewTranslator().Translate(s, o)
}
