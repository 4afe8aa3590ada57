//! MessagePack for typed payloads, encoded and decoded by rmp-serde, the library the Rust
//! client's `Payload::msgpack` and `ReceivedMessage::decode` use, so that both languages
//! write the same bytes and read each other's.
//!
//! The Python side (`switchboard._payload`) first turns dataclasses, pydantic models,
//! enums and datetimes into plain values; this module walks those plain values (None,
//! bool, int, float, str, bytes, lists, tuples and dicts) as a serde data model.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};
use pyo3::IntoPyObjectExt;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize, SerializeMap, SerializeSeq, Serializer};

pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(msgpack_encode, module)?)?;
    module.add_function(wrap_pyfunction!(msgpack_decode, module)?)?;
    Ok(())
}

/// `value` (plain values only) as MessagePack with rmp-serde's conventions.
#[pyfunction]
fn msgpack_encode<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let body = rmp_serde::to_vec_named(&PlainValue(value))
        .map_err(|error| PyTypeError::new_err(error.to_string()))?;
    Ok(PyBytes::new(py, &body))
}

/// The plain value MessagePack `body` holds: maps become dicts, arrays lists, binary
/// bytes. Raises ValueError when `body` is not one whole MessagePack value.
#[pyfunction]
fn msgpack_decode(py: Python<'_>, body: &[u8]) -> PyResult<Py<PyAny>> {
    let mut rest = body;
    let value = PlainSeed(py)
        .deserialize(&mut rmp_serde::Deserializer::new(&mut rest))
        .map_err(|error| pyo3::exceptions::PyValueError::new_err(error.to_string()))?;
    if !rest.is_empty() {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{} bytes left after the MessagePack value",
            rest.len()
        )));
    }
    Ok(value)
}

/// A plain Python value seen as serde data.
struct PlainValue<'a, 'py>(&'a Bound<'py, PyAny>);

impl Serialize for PlainValue<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.0;
        if value.is_none() {
            return serializer.serialize_none();
        }
        // bool before int: True is an int to Python.
        if let Ok(flag) = value.cast::<PyBool>() {
            return serializer.serialize_bool(flag.is_true());
        }
        if value.is_instance_of::<PyInt>() {
            if let Ok(number) = value.extract::<i64>() {
                return serializer.serialize_i64(number);
            }
            if let Ok(number) = value.extract::<u64>() {
                return serializer.serialize_u64(number);
            }
            return Err(ser::Error::custom(format!(
                "{value} does not fit in 64 bits, the largest MessagePack integer"
            )));
        }
        if let Ok(number) = value.cast::<PyFloat>() {
            return serializer.serialize_f64(number.value());
        }
        if let Ok(text) = value.cast::<PyString>() {
            let text = text.to_cow().map_err(ser::Error::custom)?;
            return serializer.serialize_str(&text);
        }
        if let Ok(bytes) = value.cast::<PyBytes>() {
            return serializer.serialize_bytes(bytes.as_bytes());
        }
        if let Ok(bytes) = value.cast::<PyByteArray>() {
            return serializer.serialize_bytes(&bytes.to_vec());
        }
        if let Ok(list) = value.cast::<PyList>() {
            let mut seq = serializer.serialize_seq(Some(list.len()))?;
            for item in list.iter() {
                seq.serialize_element(&PlainValue(&item))?;
            }
            return seq.end();
        }
        if let Ok(tuple) = value.cast::<PyTuple>() {
            let mut seq = serializer.serialize_seq(Some(tuple.len()))?;
            for item in tuple.iter() {
                seq.serialize_element(&PlainValue(&item))?;
            }
            return seq.end();
        }
        if let Ok(dict) = value.cast::<PyDict>() {
            let mut map = serializer.serialize_map(Some(dict.len()))?;
            for (key, item) in dict.iter() {
                map.serialize_entry(&PlainValue(&key), &PlainValue(&item))?;
            }
            return map.end();
        }
        let type_name = value
            .get_type()
            .name()
            .map(|name| name.to_string())
            .unwrap_or_else(|_| "?".to_owned());
        Err(ser::Error::custom(format!(
            "a {type_name} has no MessagePack form"
        )))
    }
}

/// Builds the Python value of whatever serde data comes.
#[derive(Clone, Copy)]
struct PlainSeed<'py>(Python<'py>);

impl<'de, 'py> DeserializeSeed<'de> for PlainSeed<'py> {
    type Value = Py<PyAny>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn python_value<'py, T, E>(py: Python<'py>, value: T) -> Result<Py<PyAny>, E>
where
    T: IntoPyObject<'py>,
    E: de::Error,
{
    value.into_py_any(py).map_err(E::custom)
}

impl<'de, 'py> Visitor<'de> for PlainSeed<'py> {
    type Value = Py<PyAny>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a MessagePack value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        python_value(self.0, value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        python_value(self.0, value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        python_value(self.0, value)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        python_value(self.0, value)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        python_value(self.0, value)
    }

    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<Self::Value, E> {
        Ok(PyBytes::new(self.0, value).into_any().unbind())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.0.None())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.0.None())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        _deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        // rmp-serde hands MessagePack extension values over as a newtype.
        Err(de::Error::custom(
            "MessagePack extension types are not supported",
        ))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let list = PyList::empty(self.0);
        while let Some(item) = seq.next_element_seed(self)? {
            list.append(item).map_err(de::Error::custom)?;
        }
        Ok(list.into_any().unbind())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let dict = PyDict::new(self.0);
        while let Some((key, item)) = map.next_entry_seed(self, self)? {
            dict.set_item(key, item).map_err(de::Error::custom)?;
        }
        Ok(dict.into_any().unbind())
    }
}
