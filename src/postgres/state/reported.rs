//! The parameter values a server reports with ParameterStatus, as one
//! server connection holds them and as a client last saw them. Equal copies
//! come to share one allocation, so the comparison every attach makes under
//! transaction pooling is usually a pointer check, not a walk over a dozen
//! strings.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;

/// Reported parameter names and their values, cheap to clone and compare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportedParams(Arc<BTreeMap<String, String>>);

impl ReportedParams {
    /// Records a reported value; copies the map first only if it is shared
    /// and the value is new.
    pub fn insert(&mut self, name: &str, value: &str) {
        if self.0.get(name).map(String::as_str) != Some(value) {
            Arc::make_mut(&mut self.0).insert(name.to_owned(), value.to_owned());
        }
    }

    /// Whether both hold the same values. When they do but sit in different
    /// allocations, both keep the one at the lower address: every equal
    /// copy that meets another moves to the lower of the two, so the copies
    /// held by a pool's connections and its clients converge on one.
    pub fn same_as(&mut self, other: &mut ReportedParams) -> bool {
        if Arc::ptr_eq(&self.0, &other.0) {
            return true;
        }
        if self.0 != other.0 {
            return false;
        }
        if Arc::as_ptr(&self.0) < Arc::as_ptr(&other.0) {
            other.0 = Arc::clone(&self.0);
        } else {
            self.0 = Arc::clone(&other.0);
        }
        true
    }
}

impl Deref for ReportedParams {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(items: &[(&str, &str)]) -> ReportedParams {
        let mut params = ReportedParams::default();
        for (name, value) in items {
            params.insert(name, value);
        }
        params
    }

    #[test]
    fn equal_copies_end_up_sharing_one_allocation() {
        let mut a = params(&[("TimeZone", "UTC"), ("DateStyle", "ISO, MDY")]);
        let mut b = params(&[("DateStyle", "ISO, MDY"), ("TimeZone", "UTC")]);
        assert!(!Arc::ptr_eq(&a.0, &b.0));
        assert!(a.same_as(&mut b));
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert!(a.same_as(&mut b));
    }

    #[test]
    fn copies_converge_on_the_lowest_allocation() {
        let mut copies: Vec<ReportedParams> = (0..8).map(|_| params(&[("a", "1")])).collect();
        let lowest = copies.iter().map(|p| Arc::as_ptr(&p.0)).min().unwrap();
        let (first, rest) = copies.split_first_mut().unwrap();
        for other in rest.iter_mut() {
            assert!(first.same_as(other));
        }
        for other in rest.iter_mut() {
            assert!(first.same_as(other));
        }
        assert!(copies.iter().all(|p| Arc::as_ptr(&p.0) == lowest));
    }

    #[test]
    fn different_values_stay_apart_and_a_change_does_not_reach_a_sharer() {
        let mut server = params(&[("application_name", "a")]);
        let mut client = params(&[("application_name", "b")]);
        assert!(!server.same_as(&mut client));
        assert_eq!(client.get("application_name").unwrap(), "b");

        let mut seen = server.clone();
        server.insert("application_name", "c");
        assert_eq!(seen.get("application_name").unwrap(), "a");
        assert!(!server.same_as(&mut seen));
    }

    #[test]
    fn inserting_an_unchanged_value_keeps_the_map_shared() {
        let server = params(&[("TimeZone", "UTC")]);
        let mut seen = server.clone();
        seen.insert("TimeZone", "UTC");
        assert!(Arc::ptr_eq(&server.0, &seen.0));
    }
}
