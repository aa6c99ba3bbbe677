//! Random values for rotation and `GeneratePassword`: characters drawn uniformly (no modulo
//! bias) from the OS CSPRNG, from the classes the options include, minus excluded characters.

use rand::{rngs::OsRng, seq::IndexedRandom, TryRngCore};

use crate::secret::SecretValue;

pub(crate) const DEFAULT_LENGTH: usize = 32;
pub(crate) const MAX_LENGTH: usize = 4096;
const LOWERCASE: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPERCASE: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const NUMBERS: &str = "0123456789";
/// The punctuation Secrets Manager's GetRandomPassword uses.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratorOptions {
    pub length: usize,
    pub lowercase: bool,
    pub uppercase: bool,
    pub numbers: bool,
    pub punctuation: bool,
    pub space: bool,
    pub exclude: String,
    /// At least one character of every included class.
    pub require_each: bool,
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        Self {
            length: DEFAULT_LENGTH,
            lowercase: true,
            uppercase: true,
            numbers: true,
            punctuation: true,
            space: false,
            exclude: String::new(),
            require_each: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GenerateError {
    #[error("length must be between 1 and {MAX_LENGTH}, got {0}")]
    Length(usize),
    #[error("no characters left to choose from: every class is excluded")]
    NoCharacters,
    #[error("length {length} is too short to hold one character of each of the {classes} included classes")]
    TooShort { length: usize, classes: usize },
}

/// A random value as the options describe.
pub(crate) fn generate(options: &GeneratorOptions) -> Result<SecretValue, GenerateError> {
    if options.length == 0 || options.length > MAX_LENGTH {
        return Err(GenerateError::Length(options.length));
    }
    let classes: Vec<Vec<char>> = [
        (options.lowercase, LOWERCASE),
        (options.uppercase, UPPERCASE),
        (options.numbers, NUMBERS),
        (options.punctuation, PUNCTUATION),
        (options.space, " "),
    ]
    .into_iter()
    .filter(|(included, _)| *included)
    .map(|(_, chars)| {
        chars
            .chars()
            .filter(|c| !options.exclude.contains(*c))
            .collect::<Vec<_>>()
    })
    .filter(|chars| !chars.is_empty())
    .collect();
    let alphabet: Vec<char> = classes.iter().flatten().copied().collect();
    if alphabet.is_empty() {
        return Err(GenerateError::NoCharacters);
    }
    if options.require_each && options.length < classes.len() {
        return Err(GenerateError::TooShort {
            length: options.length,
            classes: classes.len(),
        });
    }
    let mut rng = OsRng.unwrap_err();
    // Draw whole values until one has every class: each accepted value is uniform over the
    // values that satisfy the requirement (placing one of each class first would skew it).
    loop {
        let value: String = (0..options.length)
            .map(|_| *alphabet.choose(&mut rng).expect("non-empty alphabet"))
            .collect();
        if !options.require_each
            || classes
                .iter()
                .all(|class| value.chars().any(|c| class.contains(&c)))
        {
            return Ok(SecretValue::new(value.into_bytes()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn text(value: &SecretValue) -> String {
        String::from_utf8(value.expose().to_vec()).unwrap()
    }

    #[test]
    fn lengths_classes_and_exclusions_hold_over_many_draws() {
        let options = GeneratorOptions {
            length: 12,
            exclude: "0O1lI".into(),
            ..GeneratorOptions::default()
        };
        for _ in 0..2000 {
            let value = text(&generate(&options).unwrap());
            assert_eq!(value.chars().count(), 12);
            assert!(value.chars().any(|c| c.is_ascii_lowercase()), "{value}");
            assert!(value.chars().any(|c| c.is_ascii_uppercase()), "{value}");
            assert!(value.chars().any(|c| c.is_ascii_digit()), "{value}");
            assert!(value.chars().any(|c| PUNCTUATION.contains(c)), "{value}");
            assert!(!value.chars().any(|c| "0O1lI".contains(c)), "{value}");
            assert!(!value.contains(' '));
        }
    }

    #[test]
    fn character_frequencies_are_plausibly_uniform() {
        // Digits only, 200k characters: each digit expected 20k times. A chi-square test with
        // 9 degrees of freedom; 39.34 is the 0.001% critical value, so a fair generator fails
        // this once in 100,000 runs, and a byte taken modulo 10 (a 4% bias, chi-square ≈ 300)
        // always.
        let options = GeneratorOptions {
            length: 2000,
            lowercase: false,
            uppercase: false,
            punctuation: false,
            ..GeneratorOptions::default()
        };
        let mut counts: HashMap<char, u64> = HashMap::new();
        for _ in 0..100 {
            for c in text(&generate(&options).unwrap()).chars() {
                *counts.entry(c).or_default() += 1;
            }
        }
        assert_eq!(counts.len(), 10);
        let expected = 20_000.0;
        let chi2: f64 = counts
            .values()
            .map(|n| (*n as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 39.34, "chi-square {chi2:.1} over {counts:?}");
    }

    #[test]
    fn options_that_cannot_be_met_are_errors() {
        let none = GeneratorOptions {
            lowercase: false,
            uppercase: false,
            numbers: false,
            punctuation: false,
            ..GeneratorOptions::default()
        };
        assert_eq!(generate(&none).unwrap_err(), GenerateError::NoCharacters);
        let short = GeneratorOptions {
            length: 3,
            ..GeneratorOptions::default()
        };
        assert!(matches!(
            generate(&short).unwrap_err(),
            GenerateError::TooShort { .. }
        ));
        for length in [0, MAX_LENGTH + 1] {
            let bad = GeneratorOptions {
                length,
                ..GeneratorOptions::default()
            };
            assert_eq!(generate(&bad).unwrap_err(), GenerateError::Length(length));
        }
        let only_excluded = GeneratorOptions {
            lowercase: false,
            uppercase: false,
            punctuation: false,
            exclude: NUMBERS.into(),
            ..GeneratorOptions::default()
        };
        assert_eq!(
            generate(&only_excluded).unwrap_err(),
            GenerateError::NoCharacters
        );
    }

    #[test]
    fn space_when_asked() {
        let options = GeneratorOptions {
            length: 200,
            lowercase: false,
            uppercase: false,
            numbers: false,
            punctuation: false,
            space: true,
            ..GeneratorOptions::default()
        };
        assert_eq!(text(&generate(&options).unwrap()), " ".repeat(200));
    }
}
