//! Query strings decoded into each verb's typed options (`#[derive(Deserialize)]` structs),
//! read as Kubernetes reads its `url.Values`: the first value of a repeated parameter
//! counts, except for lists (`dryRun=All&dryRun=All`); a boolean is true unless it is `0`
//! or `false` (any case), so `?watch` alone is true; an empty value is no value. A number
//! or a choice that does not parse is 400 naming the parameter and what it must be, rather
//! than a silent default. Parameters a verb does not take are ignored.

use std::collections::BTreeMap;

use axum::extract::Query;
use axum::http::Uri;
use serde::de::value::{MapDeserializer, SeqDeserializer, StringDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::respond::{ApiFailure, fail};

/// Decodes the query of `uri` into a verb's options.
pub fn decode<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiFailure> {
    // axum's `Query` does the form decoding (`%3D`, `+`); pairs, because its struct
    // decoding refuses a repeated key.
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| fail(400, "BadRequest", e.body_text()))?;
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in pairs {
        by_key.entry(k).or_default().push(v);
    }
    let params = by_key
        .into_iter()
        .map(|(key, values)| (key.clone(), Values { key, values }));
    T::deserialize(MapDeserializer::new(params))
        .map_err(|QueryError(message)| fail(400, "BadRequest", message))
}

/// Why a query did not decode: the whole message of the 400 answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(String);

impl de::Error for QueryError {
    fn custom<T: std::fmt::Display>(msg: T) -> QueryError {
        QueryError(msg.to_string())
    }
}

/// Every value one parameter was given, in order.
struct Values {
    key: String,
    values: Vec<String>,
}

impl Values {
    fn given(&self) -> impl Iterator<Item = &String> {
        self.values.iter().filter(|v| !v.is_empty())
    }

    fn first(&self) -> String {
        self.given().next().cloned().unwrap_or_default()
    }

    fn invalid(&self, value: &str, want: &str) -> QueryError {
        QueryError(format!(
            "query parameter {}={value:?} is invalid: it must be {want}",
            self.key
        ))
    }
}

impl<'de> IntoDeserializer<'de, QueryError> for Values {
    type Deserializer = Values;

    fn into_deserializer(self) -> Values {
        self
    }
}

impl<'de> de::Deserializer<'de> for Values {
    type Error = QueryError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        visitor.visit_string(self.first())
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        let v = self.values.first().map_or("", String::as_str);
        visitor.visit_bool(v != "0" && !v.eq_ignore_ascii_case("false"))
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        let mut first = None;
        for v in self.given() {
            let n = v
                .parse::<u64>()
                .map_err(|_| self.invalid(v, "a whole number, 0 or more"))?;
            first.get_or_insert(n);
        }
        visitor.visit_u64(first.unwrap_or_default())
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        if self.given().next().is_none() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        visitor.visit_seq(SeqDeserializer::new(self.values.into_iter()))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, QueryError> {
        if let Some(v) = self.given().find(|v| !variants.contains(&v.as_str())) {
            return Err(self.invalid(v, &format!("one of {}", variants.join(", "))));
        }
        visitor.visit_enum(StringDeserializer::<QueryError>::new(self.first()))
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, rename_all = "camelCase")]
    struct Sample {
        watch: bool,
        limit: Option<u64>,
        label_selector: Option<String>,
        dry_run: Vec<String>,
        pick: Option<Pick>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    enum Pick {
        One,
        Two,
    }

    fn sample(query: &str) -> Result<Sample, String> {
        let uri: Uri = format!("/x?{query}").parse().expect("a URI");
        decode::<Sample>(&uri).map_err(|ApiFailure(st)| {
            assert_eq!((st.code, st.reason.as_str()), (400, "BadRequest"));
            st.message
        })
    }

    #[test]
    fn values_are_form_decoded() {
        let s = sample("labelSelector=metadata.name%3Dhello").expect("valid");
        assert_eq!(s.label_selector.as_deref(), Some("metadata.name=hello"));
        let s = sample("labelSelector=a+b%2Cc").expect("valid");
        assert_eq!(s.label_selector.as_deref(), Some("a b,c"));
        let s = sample("labelSelector=100%").expect("valid");
        assert_eq!(s.label_selector.as_deref(), Some("100%"));
        let s = sample("labelSelector=%zz").expect("valid");
        assert_eq!(s.label_selector.as_deref(), Some("%zz"));
    }

    #[test]
    fn booleans_are_true_unless_zero_or_false() {
        for (q, want) in [
            ("", false),
            ("watch", true),
            ("watch=", true),
            ("watch=1", true),
            ("watch=true", true),
            ("watch=0", false),
            ("watch=FALSE", false),
        ] {
            assert_eq!(sample(q).expect("valid").watch, want, "{q:?}");
        }
    }

    #[test]
    fn the_first_of_repeated_values_counts_but_lists_keep_all() {
        let s = sample("limit=3&limit=4&dryRun=All&dryRun=All").expect("valid");
        assert_eq!(s.limit, Some(3));
        assert_eq!(s.dry_run, ["All", "All"]);
    }

    #[test]
    fn an_empty_value_is_no_value() {
        let s = sample("limit=&labelSelector=&pick=").expect("valid");
        assert_eq!((s.limit, s.label_selector, s.pick), (None, None, None));
    }

    #[test]
    fn a_bad_number_is_refused_naming_the_parameter() {
        assert_eq!(
            sample("limit=soon").expect_err("not a number"),
            "query parameter limit=\"soon\" is invalid: it must be a whole number, 0 or more"
        );
        sample("limit=-1").expect_err("negative");
        sample("limit=3&limit=x").expect_err("every value is checked");
    }

    #[test]
    fn a_bad_choice_is_refused_naming_the_choices() {
        assert_eq!(sample("pick=Two").expect("valid").pick, Some(Pick::Two));
        assert_eq!(
            sample("pick=three").expect_err("not a choice"),
            "query parameter pick=\"three\" is invalid: it must be one of One, Two"
        );
    }

    #[test]
    fn unknown_parameters_are_ignored() {
        assert_eq!(sample("other=1&x").expect("valid"), Sample::default());
    }
}
