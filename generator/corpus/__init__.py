"""The meta-training corpus: prepared from talking-head videos, read back as episodes (paper sec. 3.2)."""

from generator.corpus.episodes import Episode, EpisodeSampler, VideoEntry, corpus_fingerprint, load_corpus
from generator.corpus.prepare import PrepareConfig, prepare_corpus, read_corpus

__all__ = [
    "Episode", "EpisodeSampler", "PrepareConfig", "VideoEntry", "corpus_fingerprint", "load_corpus",
    "prepare_corpus", "read_corpus",
]
