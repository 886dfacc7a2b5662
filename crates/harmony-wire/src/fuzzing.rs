//! Decode -> encode -> decode checks shared by the fuzz targets and the corpus replay tests.
//! Each function panics only when a round trip disagrees with itself: a bug.
