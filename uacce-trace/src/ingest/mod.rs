//! Where events come from: kernel records and raw recordings become domain
//! events, paired, attributed and accounted for.

pub mod attribution;
pub mod decode;
pub mod event;
pub mod inthash;
pub mod live;
pub mod losses;
pub mod pairing;
pub mod proctree;
pub mod rawfile;
pub mod requests;
pub mod run;
pub mod scan;
pub mod source;
pub mod summary;
