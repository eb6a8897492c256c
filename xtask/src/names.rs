//! The names a new service is known by in each tier, derived from the one its author gives.

/// Module names a new service may not take: existing modules, tables and test modules of
/// the tiers (and `roles`, where the scopes are defined), Rust keywords.
const RESERVED: &[&str] = &[
    "audit",
    "audit_events",
    "auth",
    "bounded",
    "movies",
    "users",
    "query",
    "roles",
    "scopes",
    "sessions",
    "refresh_families",
    "refresh_tokens",
    "health",
    "token",
    "docs",
    "openapi",
    "config",
    "database",
    "error",
    "errors",
    "routes",
    "schema",
    "rows",
    "connection",
    "migrations",
    "extract",
    "middleware",
    "startup",
    "web",
    "support",
    "binary",
    "browser",
    "hostile",
    "resilience",
    "fuzz",
    "movie_writes",
    "key_rotation",
    "oauth_clients",
    "proxies",
    "tls",
    "lib",
    "main",
    "mod",
    "tests",
    "test",
    "crate",
    "self",
    "super",
    "type",
    "fn",
    "struct",
    "enum",
    "impl",
    "trait",
    "use",
    "pub",
    "let",
    "match",
    "move",
    "ref",
    "static",
    "const",
    "loop",
    "while",
    "for",
    "in",
    "if",
    "else",
    "return",
    "where",
    "async",
    "await",
    "dyn",
    "box",
    "unsafe",
    "extern",
    "true",
    "false",
    "as",
    "break",
    "continue",
    "abstract",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "try",
    "gen",
];

/// Plural last words the suffix rules get wrong, with their singulars (a word the same in both
/// numbers maps to itself). Matched against the whole last word of NAME only: `horseshoes`
/// is not `shoes`, and anything missing here needs `--singular`.
const IRREGULAR: &[(&str, &str)] = &[
    ("people", "person"),
    ("children", "child"),
    ("men", "man"),
    ("women", "woman"),
    ("mice", "mouse"),
    ("geese", "goose"),
    ("feet", "foot"),
    ("teeth", "tooth"),
    ("criteria", "criterion"),
    ("indices", "index"),
    ("matrices", "matrix"),
    ("vertices", "vertex"),
    ("analyses", "analysis"),
    ("crises", "crisis"),
    ("hypotheses", "hypothesis"),
    ("diagnoses", "diagnosis"),
    ("axes", "axis"),
    ("aliases", "alias"),
    ("biases", "bias"),
    ("gases", "gas"),
    ("quizzes", "quiz"),
    ("movies", "movie"),
    ("cookies", "cookie"),
    ("zombies", "zombie"),
    ("rookies", "rookie"),
    ("selfies", "selfie"),
    ("calories", "calorie"),
    ("goalies", "goalie"),
    ("hoodies", "hoodie"),
    ("newbies", "newbie"),
    ("brownies", "brownie"),
    ("pies", "pie"),
    ("ties", "tie"),
    ("lies", "lie"),
    ("shoes", "shoe"),
    ("toes", "toe"),
    ("canoes", "canoe"),
    ("uses", "use"),
    ("excuses", "excuse"),
    ("abuses", "abuse"),
    ("caches", "cache"),
    ("niches", "niche"),
    ("headaches", "headache"),
    ("knives", "knife"),
    ("wives", "wife"),
    ("lives", "life"),
    ("leaves", "leaf"),
    ("shelves", "shelf"),
    ("wolves", "wolf"),
    ("halves", "half"),
    ("thieves", "thief"),
    ("selves", "self"),
    ("series", "series"),
    ("species", "species"),
    ("news", "news"),
    ("means", "means"),
    ("analytics", "analytics"),
    ("sheep", "sheep"),
    ("deer", "deer"),
];

/// Suffix rules for the last word of NAME, first match wins; a word none of them fits is
/// taken as it is (`staff`, `data`). Order matters: `ouses` before `uses` before `us`.
const SUFFIX_RULES: &[(&str, &str)] = &[
    ("sses", "ss"),    // classes, addresses
    ("ss", "ss"),      // access: already singular
    ("ouses", "ouse"), // houses, warehouses
    ("auses", "ause"), // causes, clauses
    ("uses", "us"),    // statuses, buses, campuses
    ("us", "us"),      // status
    ("is", "is"),      // analysis
    ("xes", "x"),      // boxes, taxes
    ("ches", "ch"),    // matches, branches
    ("shes", "sh"),    // dishes, hashes
    ("zzes", "zz"),    // buzzes
    ("ies", "y"),      // categories, companies
    ("oes", "o"),      // heroes, potatoes
    ("s", ""),         // users, archives, responses
];

/// The singular of a lower_snake_case plural: only its last word changes.
fn singularise(plural: &str) -> String {
    let (head, word) = match plural.rfind('_') {
        Some(at) => plural.split_at(at + 1),
        None => ("", plural),
    };
    let singular = IRREGULAR
        .iter()
        .find(|(p, _)| *p == word)
        .map(|(_, s)| (*s).to_owned())
        .or_else(|| {
            SUFFIX_RULES.iter().find_map(|(suffix, replacement)| {
                word.strip_suffix(suffix)
                    .filter(|stem| !stem.is_empty())
                    .map(|stem| format!("{stem}{replacement}"))
            })
        })
        .unwrap_or_else(|| word.to_owned());
    format!("{head}{singular}")
}

/// lower_snake_case, 2-40 characters, starting with a letter.
fn is_snake_case(name: &str) -> bool {
    (2..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__")
}

/// `film_review` → `FilmReview`.
fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The names a service is known by in each tier.
pub(crate) struct Names {
    /// Table, module, scope and URL prefix: `directors`.
    pub(crate) plural: String,
    /// Singular snake case: `director`.
    pub(crate) singular: String,
    /// Type prefix: `Director` (→ `DirectorRow`, `DirectorSchema`, `DirectorService`).
    pub(crate) type_name: String,
    /// Primary key column: `director_id`.
    pub(crate) id: String,
    /// Marker type of the service's read scope `directors:read`: `DirectorsRead`.
    pub(crate) scope_marker: String,
}

impl Names {
    /// Checks NAME and the singular if given, else derives it; every refusal is one line.
    /// The singular may be a keyword (`box`): the templates use it only inside longer
    /// identifiers (`box_id`, `BoxRow`, `get_box`).
    pub(crate) fn parse(name: &str, singular: Option<&str>) -> Result<Self, String> {
        if !is_snake_case(name) {
            return Err(format!(
                "invalid service name `{name}`: use lower_snake_case, 2-40 characters, starting with a letter (e.g. directors)"
            ));
        }
        if RESERVED.contains(&name) {
            return Err(format!(
                "invalid service name `{name}`: it is reserved (an existing module or table, or a Rust keyword)"
            ));
        }
        let singular = match singular {
            Some(given) if is_snake_case(given) => given.to_owned(),
            Some(given) => {
                return Err(format!(
                    "invalid singular `{given}`: use lower_snake_case, 2-40 characters, starting with a letter (e.g. director)"
                ));
            }
            None => singularise(name),
        };
        Ok(Self {
            id: format!("{singular}_id"),
            plural: name.to_owned(),
            type_name: camel_case(&singular),
            scope_marker: format!("{}Read", camel_case(name)),
            singular,
        })
    }

    /// Fills a template's placeholders.
    pub(crate) fn fill(&self, template: &str, migration: &str) -> String {
        template
            .replace("__NAME__", &self.plural)
            .replace("__SINGULAR__", &self.singular)
            .replace("__TYPE__", &self.type_name)
            .replace("__ID__", &self.id)
            .replace("__SCOPE_MARKER__", &self.scope_marker)
            .replace("__MIGRATION__", migration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_are_singularised() {
        for (plural, singular) in [
            ("categories", "category"),
            ("companies", "company"),
            ("movies", "movie"),
            ("classes", "class"),
            ("addresses", "address"),
            ("boxes", "box"),
            ("matches", "match"),
            ("statuses", "status"),
            ("houses", "house"),
            ("series", "series"),
            ("news", "news"),
            ("people", "person"),
            ("users", "user"),
            ("directors", "director"),
            ("archives", "archive"),
            ("responses", "response"),
            ("caches", "cache"),
            ("heroes", "hero"),
            ("staff", "staff"),
            ("film_reviews", "film_review"),
            ("sales_people", "sales_person"),
            ("news_items", "news_item"),
        ] {
            assert_eq!(singularise(plural), singular, "{plural}");
        }
    }

    #[test]
    fn names_are_derived_and_checked() {
        let names = Names::parse("directors", None).unwrap();
        assert_eq!(
            (
                names.singular.as_str(),
                names.type_name.as_str(),
                names.id.as_str()
            ),
            ("director", "Director", "director_id")
        );
        let names = Names::parse("film_reviews", None).unwrap();
        assert_eq!(
            (names.type_name.as_str(), names.scope_marker.as_str()),
            ("FilmReview", "FilmReviewsRead")
        );
        assert_eq!(
            Names::parse("categories", None).unwrap().type_name,
            "Category"
        );
        let names = Names::parse("personnel", Some("staff_member")).unwrap();
        assert_eq!(
            (names.type_name.as_str(), names.id.as_str()),
            ("StaffMember", "staff_member_id")
        );
        for bad in [
            "",
            "a",
            "Directors",
            "1abc",
            "dir-ectors",
            "dir__x",
            "x_",
            "movies",
            "auth",
            "type",
            "users",
            "query",
            "scopes",
            "sessions",
            "roles",
        ] {
            assert!(Names::parse(bad, None).is_err(), "{bad}");
        }
        for bad in ["", "Person", "per son", "p"] {
            assert!(Names::parse("people", Some(bad)).is_err(), "{bad}");
        }
    }
}
