"""The meta-training corpus: prepared from talking-head videos (prepare), read back typed (reader:
Corpus, VideoEntry) and drawn as episodes (paper sec. 3.2)."""

from generator.corpus.episodes import Episode, EpisodeSampler, VideoEntry, corpus_fingerprint, load_corpus
from generator.corpus.prepare import PrepareConfig, prepare_corpus, read_corpus
from generator.corpus.reader import Corpus

__all__ = [
    "Corpus", "Episode", "EpisodeSampler", "PrepareConfig", "VideoEntry", "corpus_fingerprint", "load_corpus",
    "prepare_corpus", "read_corpus",
]
