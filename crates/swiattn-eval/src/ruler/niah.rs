//! RULER's needle-in-a-haystack tasks. A needle is "One of the special magic {kind} for {key} is:
//! {value}."; the haystack is a repeated noise paragraph, essays (whole sentences), or other
//! needles; the prompt asks for the value(s) of the queried key(s) and ends in RULER's answer
//! prefix. The haystack grows until the prompt is as long as `length` tokens minus the tokens left
//! to generate (binary search over haystack units).
//!
//! | task | haystack | key | value | needles × values, queries |
//! |---|---|---|---|---|
//! | niah_single_1 | noise | word | number | 1 × 1, 1 |
//! | niah_single_2 | essay | word | number | 1 × 1, 1 |
//! | niah_single_3 | essay | word | uuid | 1 × 1, 1 |
//! | niah_multikey_1 | essay | word | number | 4 × 1, 1 |
//! | niah_multikey_2 | needles | word | number | 1 × 1, 1 |
//! | niah_multikey_3 | needles | uuid | uuid | 1 × 1, 1 |
//! | niah_multivalue | essay | word | number | 1 × 4, 1 |
//! | niah_multiquery | essay | word | number | 4 × 1, 4 |

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use swiattn_core::{Error, Result};

use super::{Sample, TASKS, largest_fitting, prompt_budget, sample_rng};

const NOISE: &str = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
const ADJECTIVES: [&str; 40] = [
    "amber", "brave", "calm", "dusty", "eager", "faint", "gentle", "hollow", "icy", "jolly", "keen", "lively",
    "mellow", "nimble", "odd", "pale", "quiet", "rapid", "silent", "tidy", "upbeat", "vivid", "wary", "young", "zesty",
    "bold", "crisp", "dense", "early", "fluffy", "grand", "humble", "ivory", "jagged", "kind", "loud", "modest",
    "narrow", "olive", "proud",
];
const NOUNS: [&str; 40] = [
    "anchor", "badger", "candle", "dragon", "engine", "falcon", "garden", "harbor", "island", "jacket", "kettle",
    "lantern", "meadow", "needle", "orchard", "pebble", "quarry", "river", "saddle", "tunnel", "umbrella", "valley",
    "walrus", "yacht", "zipper", "barrel", "canyon", "desert", "ember", "forest", "glacier", "helmet", "igloo",
    "jungle", "kitten", "ladder", "mirror", "nectar", "oyster", "parrot",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Haystack {
    Noise,
    Essay,
    Needles,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Word,
    Number,
    Uuid,
}

impl Kind {
    fn plural(self) -> &'static str {
        match self {
            Kind::Word => "words",
            Kind::Number => "numbers",
            Kind::Uuid => "uuids",
        }
    }

    fn draw(self, rng: &mut StdRng) -> String {
        match self {
            Kind::Word => {
                format!("{}-{}", ADJECTIVES.choose(rng).expect("non-empty"), NOUNS.choose(rng).expect("non-empty"))
            }
            Kind::Number => rng.random_range(1_000_000..10_000_000u32).to_string(),
            Kind::Uuid => {
                let hex: String =
                    (0..32).map(|_| char::from_digit(rng.random_range(0..16), 16).expect("a hex digit")).collect();
                format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
            }
        }
    }
}

/// A needle task's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Niah {
    haystack: Haystack,
    key: Kind,
    value: Kind,
    keys: usize,
    values: usize,
    queries: usize,
}

impl Niah {
    pub fn named(name: &str) -> Result<Self> {
        use Haystack::*;
        use Kind::*;
        let t = |haystack, key, value, keys, values, queries| Niah { haystack, key, value, keys, values, queries };
        Ok(match name {
            "niah_single_1" => t(Noise, Word, Number, 1, 1, 1),
            "niah_single_2" => t(Essay, Word, Number, 1, 1, 1),
            "niah_single_3" => t(Essay, Word, Uuid, 1, 1, 1),
            "niah_multikey_1" => t(Essay, Word, Number, 4, 1, 1),
            "niah_multikey_2" => t(Needles, Word, Number, 1, 1, 1),
            "niah_multikey_3" => t(Needles, Uuid, Uuid, 1, 1, 1),
            "niah_multivalue" => t(Essay, Word, Number, 1, 4, 1),
            "niah_multiquery" => t(Essay, Word, Number, 4, 1, 4),
            other => return Err(Error::Invalid(format!("unknown RULER task `{other}` (known: {})", TASKS.join(", ")))),
        })
    }

    /// Whether the haystack is essay text.
    pub fn reads_essays(&self) -> bool {
        self.haystack == Haystack::Essay
    }

    fn needle(&self, key: &str, value: &str) -> String {
        format!("One of the special magic {} for {key} is: {value}.", self.value.plural())
    }

    /// Sample `index` at `length` tokens (as `count_tokens` counts), leaving `to_generate` tokens.
    /// `essay` is the essay text (whole sentences are used) for essay haystacks.
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        name: &str,
        seed: u64,
        index: usize,
        length: usize,
        to_generate: usize,
        essay: &[String],
        count_tokens: &dyn Fn(&str) -> Result<usize>,
    ) -> Result<Sample> {
        let mut rng = sample_rng(seed, index, 0);
        // Distinct keys; each key's values.
        let mut keys: Vec<String> = Vec::new();
        while keys.len() < self.keys {
            let k = self.key.draw(&mut rng);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let values: Vec<Vec<String>> =
            keys.iter().map(|_| (0..self.values).map(|_| self.value.draw(&mut rng)).collect()).collect();
        let mut needles: Vec<String> = keys
            .iter()
            .zip(&values)
            .flat_map(|(k, vs)| vs.iter().map(|v| self.needle(k, v)).collect::<Vec<_>>())
            .collect();
        needles.shuffle(&mut rng);
        let queried: Vec<usize> = {
            let mut q: Vec<usize> = (0..self.keys).collect();
            q.shuffle(&mut rng);
            q.truncate(self.queries);
            q
        };
        let query = match queried.len() {
            1 => keys[queried[0]].clone(),
            _ => {
                let names: Vec<&str> = queried.iter().map(|&i| keys[i].as_str()).collect();
                format!("{}, and {}", names[..names.len() - 1].join(", "), names[names.len() - 1])
            }
        };
        let outputs: Vec<String> = queried.iter().flat_map(|&i| values[i].clone()).collect();
        // Needles about other keys (never one of the sample's own).
        let mut distractors = Vec::with_capacity(4096);
        while distractors.len() < 4096 {
            let key = self.key.draw(&mut rng);
            if !keys.contains(&key) {
                distractors.push(self.needle(&key, &self.value.draw(&mut rng)));
            }
        }
        let insert_seed: u64 = rng.random();
        let units = match self.haystack {
            Haystack::Noise => usize::MAX,
            Haystack::Essay => essay.len(),
            Haystack::Needles => distractors.len(),
        };
        if self.haystack == Haystack::Essay && essay.is_empty() {
            return Err(Error::Invalid(format!("{name} needs essay text for its haystack (--haystack)")));
        }
        let prompt = |n: usize| -> String {
            let mut parts: Vec<String> = match self.haystack {
                Haystack::Noise => vec![NOISE.to_string(); n],
                Haystack::Essay => essay[..n].to_vec(),
                Haystack::Needles => distractors[..n].to_vec(),
            };
            // Needles at seeded positions among the haystack's units (the same for every n's prefix).
            let mut at = StdRng::seed_from_u64(insert_seed);
            for needle in &needles {
                let i = at.random_range(0..=parts.len());
                parts.insert(i, needle.clone());
            }
            let joiner = if self.haystack == Haystack::Essay { " " } else { "\n" };
            let kind = self.value.plural();
            format!(
                "Some special magic {kind} are hidden within the following text. Make sure to memorize it. I will quiz \
                 you about the {kind} afterwards.\n{}\nWhat are all the special magic {kind} for {query} mentioned in \
                 the provided text? The special magic {kind} for {query} mentioned in the provided text are",
                parts.join(joiner)
            )
        };
        let budget = prompt_budget(length, to_generate)?;
        if count_tokens(&prompt(0))? > budget {
            return Err(Error::Invalid(format!("{name}: even an empty haystack exceeds {budget} tokens")));
        }
        // The largest haystack whose prompt fits the budget.
        let input = prompt(largest_fitting(units.min(budget), budget, &prompt, count_tokens)?);
        let length = count_tokens(&input)?;
        Ok(Sample { task: name.to_string(), index, input, outputs, length })
    }
}

/// Essays cut into sentences (after `.`, `!` or `?` followed by whitespace), in file order.
pub fn sentences(texts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for text in texts {
        let mut start = 0;
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        for w in chars.windows(2) {
            let ((i, c), (_, next)) = (w[0], w[1]);
            if matches!(c, '.' | '!' | '?') && next.is_whitespace() {
                let s = text[start..i + 1].trim();
                if !s.is_empty() {
                    out.push(s.split_whitespace().collect::<Vec<_>>().join(" "));
                }
                start = i + 1;
            }
        }
        let s = text[start..].trim();
        if !s.is_empty() {
            out.push(s.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Result<usize> {
        Ok(text.split_whitespace().count())
    }

    fn essay() -> Vec<String> {
        sentences(&["First sentence here. Second one!  Third?\nA fourth line without end".to_string()])
    }

    #[test]
    fn essays_split_into_sentences() {
        assert_eq!(essay(), vec!["First sentence here.", "Second one!", "Third?", "A fourth line without end"]);
    }

    #[test]
    fn samples_fit_the_length_hold_their_needles_and_repeat_by_seed() {
        let essay: Vec<String> = (0..400).map(|i| format!("Sentence number {i} of the essay.")).collect();
        for &name in TASKS.iter().filter(|t| t.starts_with("niah")) {
            let task = Niah::named(name).unwrap();
            let s = task.sample(name, 7, 3, 900, 50, &essay, &words).unwrap();
            assert!(s.length <= 850 && s.length > 700, "{name}: {} words", s.length);
            assert_eq!(s.length, words(&s.input).unwrap());
            for value in &s.outputs {
                assert_eq!(s.input.matches(value.as_str()).count(), 1, "{name}: {value} hidden once");
            }
            let expected = match name {
                "niah_multivalue" | "niah_multiquery" => 4,
                _ => 1,
            };
            assert_eq!(s.outputs.len(), expected, "{name}");
            assert!(s.input.ends_with("mentioned in the provided text are"));
            assert_eq!(task.sample(name, 7, 3, 900, 50, &essay, &words).unwrap(), s, "{name}: deterministic");
            assert_ne!(
                task.sample(name, 7, 4, 900, 50, &essay, &words).unwrap().outputs,
                s.outputs,
                "{name}: per index"
            );
        }
        let err =
            Niah::named("niah_single_2").unwrap().sample("niah_single_2", 0, 0, 100, 10, &[], &words).unwrap_err();
        assert!(err.to_string().contains("essay"), "{err}");
        assert!(Niah::named("niah_double").is_err());
    }
}
