//! The vocabulary more than one stage uses: where a reading comes from, what a message and a
//! normalised sample are, and names every stage agrees on. It imports only `protocols`; stages
//! depend on it, never on each other's internals.

mod broker;
mod clock;
mod intake;
mod message;
mod place;
mod receiver;
mod sample;
mod sequence;

pub use broker::BrokerAddress;
pub use clock::now_ms;
pub use intake::{Intake, Queued};
pub use message::{AckRoutes, AckToken, Acknowledgement, Incoming, Route};
pub use place::{AirSide, FloorSide, Placement, Position, UNASSIGNED, rack_id};
pub use receiver::MQTT_RECEIVER;
pub use sample::{DERIVED_NODE, Measure, Observation, Sample, Series, SeriesId, SeriesScope};
pub use sequence::SequenceMark;
