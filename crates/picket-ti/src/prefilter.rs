//! A literal prefilter for the patterns: every literal one of the patterns' matches must start
//! with (as `regex-syntax` extracts them, the way the `regex` crate builds its own prefilters),
//! in one Aho-Corasick automaton. A line holding none of them cannot match any pattern, so the
//! `RegexSet` only runs on lines the automaton hits. If some pattern has no such finite set of
//! non-empty literals (`.*x`, `\w+`, …), there is no prefilter and the set runs on every line.
//! When all the literals share a prefix of at least [`MIN_COMMON_PREFIX`] bytes, a SIMD substring
//! search for that prefix rules most lines out before the automaton runs.

use aho_corasick::{AhoCorasick, MatchKind};
use memchr::memmem;
use regex_syntax::hir::literal::{ExtractKind, Extractor};

/// Most literals the prefilter holds over all patterns (more means no prefilter).
const MAX_LITERALS: usize = 100_000;

/// Shortest common prefix of all literals worth a substring search of its own.
const MIN_COMMON_PREFIX: usize = 3;

/// A necessary condition for some pattern to match a text.
pub(crate) struct Prefilter {
    /// The literals' common prefix, when long enough.
    common: Option<memmem::Finder<'static>>,
    literals: AhoCorasick,
}

impl Prefilter {
    /// Whether `text` holds one of the literals (false: no pattern can match it).
    pub(crate) fn is_match(&self, text: &str) -> bool {
        if let Some(common) = &self.common
            && common.find(text.as_bytes()).is_none()
        {
            return false;
        }
        self.literals.is_match(text)
    }
}

/// The prefilter of `patterns` (compiled as `regex` compiles them: default flags), or `None`
/// when some pattern has no required literal prefix.
pub(crate) fn build(patterns: &[String]) -> Option<Prefilter> {
    let mut extractor = Extractor::new();
    extractor.kind(ExtractKind::Prefix);
    let mut literals: Vec<Vec<u8>> = Vec::new();
    for p in patterns {
        let hir = regex_syntax::ParserBuilder::new().build().parse(p).ok()?;
        let mut seq = extractor.extract(&hir);
        seq.optimize_for_prefix_by_preference();
        for lit in seq.literals()? {
            if lit.as_bytes().is_empty() {
                return None;
            }
            literals.push(lit.as_bytes().to_vec());
        }
        if literals.len() > MAX_LITERALS {
            return None;
        }
    }
    let mut common: &[u8] = literals.first().map_or(&[], |l| l.as_slice());
    for l in &literals {
        let n = common.iter().zip(l).take_while(|(a, b)| a == b).count();
        common = &common[..n];
    }
    let common = (common.len() >= MIN_COMMON_PREFIX).then(|| memmem::Finder::new(common).into_owned());
    let literals = AhoCorasick::builder().match_kind(MatchKind::Standard).build(&literals).ok()?;
    Some(Prefilter { common, literals })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use regex::RegexSet;

    use super::build;

    #[test]
    fn patterns_without_a_required_literal_have_no_prefilter() {
        assert!(build(&["dropper\\d+\\.exe".into(), ".*x".into()]).is_none());
        assert!(build(&["\\w+".into()]).is_none());
        assert!(build(&["a?".into()]).is_none());
        let p = build(&["dropper1\\.exe".into(), "dropper22".into()]).expect("literals");
        assert!(p.common.is_some());
        assert!(p.is_match("x dropper22 y"));
        assert!(!p.is_match("x dropper3 y"));
        let p = build(&["dropper1\\.exe".into(), "(?i)dropper2".into()]).expect("literals");
        assert!(p.common.is_none());
        assert!(p.is_match("x DROPPER2 y"));
        assert!(!p.is_match("x nothing y"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// The prefilter never rules out a text some pattern matches.
        #[test]
        fn prefilter_never_misses_a_match(
            patterns in prop::collection::vec(prop::collection::vec(prop::sample::select(vec![
                "ab", "b", "(?i)ab", "[ab]", "a+", "b*", "(a|bc)", "^", "$", "\\b", "\\d", "\\s+", "é", ".", "(?i)k", "c{2,3}",
            ]), 1..5).prop_map(|v| v.concat()), 1..5),
            texts in prop::collection::vec("[abcKk0 é\\n]{0,12}", 1..8),
        ) {
            let set = RegexSet::new(&patterns).expect("valid patterns");
            if let Some(pre) = build(&patterns) {
                for t in &texts {
                    prop_assert!(!set.is_match(t) || pre.is_match(t), "{:?} on {:?}", patterns, t);
                }
            }
        }
    }
}
