//! Sampling: which channels are due, reading them through the `hardware` channel abstraction, and
//! turning raw samples into calibrated, filtered, rounded values.
//!
//! Every channel has its own interval (or follows the node's default interval) and its own filter
//! state. A channel whose sensor fails gives a reading with a fault status and leaves its filter
//! window alone; the other channels of the same round are read as usual.

use rackwatch_hardware::{Channel, SensorSet};
use rackwatch_protocols::{ChannelConfig, ReadingStatus};

use crate::store::StoredReading;

/// The most channels one node samples: what a [`crate::store::Record`] has room for (defined there,
/// since the record is the lower stage).
pub use crate::store::MAX_CHANNELS;
/// The longest median or moving-average window.
pub const MAX_WINDOW: usize = 7;

/// Calibrated value = raw × `gain` + `offset` (protocols/README.md, "Node configuration").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub gain: f32,
    pub offset: f32,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            gain: 1.0,
            offset: 0.0,
        }
    }
}

/// How a channel's successive samples are smoothed before they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// Report each sample as it is.
    #[default]
    None,
    /// The median of the last `n` good samples (`n` ≤ [`MAX_WINDOW`]): removes single spikes (an I2C
    /// read caught mid-conversion, a current-sense glitch) without lagging a step change by more than
    /// `n / 2` samples.
    Median(u8),
    /// The mean of the last `n` good samples: smooths noise, lags a step by `n - 1` samples.
    MovingAverage(u8),
}

/// One channel as the node samples it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSetup {
    /// Name, device index and measurement (the `hardware` crate's channel).
    pub channel: Channel,
    /// Own sampling interval; `None` follows the node's interval (and `set_interval`).
    pub interval_ms: Option<u32>,
    pub calibration: Calibration,
    pub filter: Filter,
    /// Decimal places kept, so the JSON carries `22.3`, not `22.299999237060547`.
    pub decimals: u8,
}

impl ChannelSetup {
    /// A channel sampled at the node's interval, uncalibrated, unfiltered, to 3 decimals.
    pub fn new(channel: Channel) -> Self {
        ChannelSetup {
            channel,
            interval_ms: None,
            calibration: Calibration::default(),
            filter: Filter::None,
            decimals: 3,
        }
    }

    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    pub fn with_calibration(mut self, gain: f32, offset: f32) -> Self {
        self.calibration = Calibration { gain, offset };
        self
    }

    pub fn with_interval_ms(mut self, interval_ms: u32) -> Self {
        self.interval_ms = Some(interval_ms);
        self
    }

    pub fn with_decimals(mut self, decimals: u8) -> Self {
        self.decimals = decimals;
        self
    }
}

/// The last good samples of one channel, oldest first.
#[derive(Debug, Clone, Default)]
struct Window {
    samples: heapless::Deque<f32, MAX_WINDOW>,
}

impl Window {
    fn push(&mut self, value: f32, capacity: usize) {
        while self.samples.len() >= capacity.clamp(1, MAX_WINDOW) {
            self.samples.pop_front();
        }
        // Cannot fail: room was made above.
        let _ = self.samples.push_back(value);
    }

    fn median(&self) -> Option<f32> {
        let mut sorted: heapless::Vec<f32, MAX_WINDOW> = self.samples.iter().copied().collect();
        sorted.sort_unstable_by(f32::total_cmp);
        let n = sorted.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => sorted.get(n / 2).copied(),
            _ => Some((sorted.get(n / 2 - 1)? + sorted.get(n / 2)?) / 2.0),
        }
    }

    fn mean(&self) -> Option<f32> {
        let n = self.samples.len();
        #[allow(clippy::cast_precision_loss, reason = "at most MAX_WINDOW samples")]
        (n > 0).then(|| self.samples.iter().sum::<f32>() / n as f32)
    }
}

/// A channel's schedule and filter state.
#[derive(Debug, Clone)]
struct ChannelState {
    setup: ChannelSetup,
    /// The board's own calibration and interval, which a provisioned configuration overrides and a
    /// later one that leaves the channel out brings back.
    factory: (Calibration, Option<u32>),
    next_due_ms: u64,
    window: Window,
}

/// The node's channels, their schedules and filters.
#[derive(Debug, Clone)]
pub struct Sampler {
    channels: heapless::Vec<ChannelState, MAX_CHANNELS>,
    default_interval_ms: u32,
}

/// More channels than [`MAX_CHANNELS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyChannels;

/// A provisioned configuration names a channel this node does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownChannel;

impl Sampler {
    /// Every channel is due at once (the first telemetry follows boot).
    pub fn new(channels: &[ChannelSetup], default_interval_ms: u32) -> Result<Self, TooManyChannels> {
        let mut states = heapless::Vec::new();
        for setup in channels {
            states
                .push(ChannelState {
                    setup: setup.clone(),
                    factory: (setup.calibration, setup.interval_ms),
                    next_due_ms: 0,
                    window: Window::default(),
                })
                .map_err(|_| TooManyChannels)?;
        }
        Ok(Sampler {
            channels: states,
            default_interval_ms: default_interval_ms.max(1),
        })
    }

    pub fn default_interval_ms(&self) -> u32 {
        self.default_interval_ms
    }

    /// Changes the default interval; channels that follow it are next due one new interval after now.
    pub fn set_default_interval(&mut self, interval_ms: u32, now_ms: u64) {
        self.default_interval_ms = interval_ms.max(1);
        for state in &mut self.channels {
            if state.setup.interval_ms.is_none() {
                state.next_due_ms = state
                    .next_due_ms
                    .min(now_ms + u64::from(self.default_interval_ms));
            }
        }
    }

    /// Whether every channel of a provisioned configuration is one of this node's.
    pub fn check(&self, provisioned: &[ChannelConfig]) -> Result<(), UnknownChannel> {
        let known = |config: &ChannelConfig| {
            self.channels
                .iter()
                .any(|state| state.setup.channel.name == config.channel)
        };
        provisioned.iter().all(known).then_some(()).ok_or(UnknownChannel)
    }

    /// Applies a provisioned configuration's per-channel calibration and intervals: a channel it names
    /// takes its gain, offset and interval, one it leaves out goes back to the board's own. A changed
    /// channel starts a fresh filter window and is sampled now. Nothing changes when a channel is
    /// unknown.
    pub fn configure(&mut self, provisioned: &[ChannelConfig], now_ms: u64) -> Result<(), UnknownChannel> {
        self.check(provisioned)?;
        for state in &mut self.channels {
            let (calibration, interval_ms) = provisioned
                .iter()
                .find(|config| config.channel == state.setup.channel.name)
                .map_or(state.factory, |config| {
                    let calibration = Calibration {
                        gain: config.gain,
                        offset: config.offset,
                    };
                    (calibration, config.interval_ms.or(state.factory.1))
                });
            if (calibration, interval_ms) != (state.setup.calibration, state.setup.interval_ms) {
                state.setup.calibration = calibration;
                state.setup.interval_ms = interval_ms;
                state.window = Window::default();
                state.next_due_ms = now_ms;
            }
        }
        Ok(())
    }

    /// Makes every channel due now (after a command whose effect the next telemetry must show).
    pub fn sample_all_now(&mut self, now_ms: u64) {
        for state in &mut self.channels {
            state.next_due_ms = now_ms;
        }
    }

    /// When the next channel is due.
    pub fn next_due_ms(&self) -> u64 {
        self.channels
            .iter()
            .map(|s| s.next_due_ms)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The setup of channel `index`.
    pub fn setup(&self, index: u8) -> Option<&ChannelSetup> {
        self.channels.get(usize::from(index)).map(|s| &s.setup)
    }

    /// Reads every channel that is due, or `None` when none is.
    pub fn sample_due<S: SensorSet + ?Sized>(
        &mut self,
        now_ms: u64,
        sensors: &mut S,
    ) -> Option<heapless::Vec<StoredReading, MAX_CHANNELS>> {
        let mut readings = heapless::Vec::new();
        let default_interval = self.default_interval_ms;
        for (index, state) in self.channels.iter_mut().enumerate() {
            if state.next_due_ms > now_ms {
                continue;
            }
            let interval = u64::from(state.setup.interval_ms.unwrap_or(default_interval).max(1));
            // Keep the cadence, but never catch up with a burst after a stall: skip missed rounds.
            state.next_due_ms = if state.next_due_ms + interval > now_ms {
                state.next_due_ms + interval
            } else {
                now_ms + interval
            };
            let reading = state.read(sensors);
            let index = u8::try_from(index).unwrap_or(u8::MAX);
            // Cannot fail: at most MAX_CHANNELS channels.
            let _ = readings.push(StoredReading {
                channel: index,
                status: reading.0,
                value: reading.1,
            });
        }
        (!readings.is_empty()).then_some(readings)
    }
}

impl ChannelState {
    fn read<S: SensorSet + ?Sized>(&mut self, sensors: &mut S) -> (ReadingStatus, f32) {
        let reading = self.setup.channel.read(sensors);
        let Some(raw) = reading.value.filter(|_| reading.status == ReadingStatus::Ok) else {
            return (reading.status, 0.0);
        };
        #[allow(clippy::cast_possible_truncation, reason = "the sample was an f32")]
        let raw = raw as f32;
        let calibrated = raw * self.setup.calibration.gain + self.setup.calibration.offset;
        if !calibrated.is_finite() {
            return (ReadingStatus::Fault, 0.0);
        }
        let value = match self.setup.filter {
            Filter::None => Some(calibrated),
            Filter::Median(n) => {
                self.window.push(calibrated, usize::from(n));
                self.window.median()
            }
            Filter::MovingAverage(n) => {
                self.window.push(calibrated, usize::from(n));
                self.window.mean()
            }
        };
        (ReadingStatus::Ok, value.unwrap_or(calibrated))
    }
}

/// `value` rounded to `decimals` places, as the f64 closest to that decimal (so it prints short).
pub fn round_to(value: f32, decimals: u8) -> f64 {
    let scale = libm::pow(10.0, f64::from(decimals.min(9)));
    libm::round(f64::from(value) * scale) / scale
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use rackwatch_hardware::{Fault, Measurement, Sample};
    use rackwatch_protocols::ChannelName;

    use super::*;

    extern crate std;

    /// Device 0 answers with the values queued for it; any other device fails its checksum.
    struct Script(std::vec::Vec<f32>);

    impl SensorSet for Script {
        fn sample(&mut self, device: usize, measurement: Measurement) -> Result<Sample, Fault> {
            match device {
                0 if !self.0.is_empty() => Ok(measurement.sample(self.0.remove(0))),
                _ => Err(Fault::Crc),
            }
        }
    }

    fn temperature(device: u8) -> ChannelSetup {
        ChannelSetup::new(Channel::new(
            ChannelName::new("t").unwrap(),
            device,
            Measurement::Temperature,
        ))
    }

    #[test]
    fn rounding_gives_the_short_decimal() {
        assert_eq!(round_to(22.3, 1), 22.3);
        assert_eq!(round_to(22.299_95, 3), 22.3);
        assert_eq!(round_to(-0.0625, 4), -0.0625);
    }

    #[test]
    fn median_removes_a_single_spike() {
        let mut sampler = Sampler::new(&[temperature(0).with_filter(Filter::Median(3))], 1000).unwrap();
        let mut sensors = Script(std::vec![20.0, 20.5, 85.0, 21.0]);
        let values: std::vec::Vec<f32> = (0..4)
            .map(|i| sampler.sample_due(i * 1000, &mut sensors).unwrap()[0].value)
            .collect();
        assert_eq!(values, [20.0, 20.25, 20.5, 21.0]);
    }

    #[test]
    fn calibration_applies_gain_then_offset() {
        let mut sampler = Sampler::new(&[temperature(0).with_calibration(1.02, -0.5)], 1000).unwrap();
        let reading = sampler.sample_due(0, &mut Script(std::vec![25.0])).unwrap()[0];
        assert_eq!(round_to(reading.value, 3), 25.0);
    }

    fn provisioned(name: &str, gain: f32, offset: f32) -> ChannelConfig {
        ChannelConfig {
            channel: ChannelName::new(name).unwrap(),
            placement: None,
            gain,
            offset,
            interval_ms: Some(5000),
        }
    }

    #[test]
    fn provisioned_calibration_replaces_the_boards_until_left_out() {
        let mut sampler = Sampler::new(&[temperature(0).with_calibration(1.0, 1.0)], 1000).unwrap();
        let mut sensors = Script(std::vec![20.0; 4]);
        sampler.configure(&[provisioned("t", 2.0, -0.5)], 10).unwrap();
        let reading = sampler.sample_due(10, &mut sensors).unwrap()[0];
        assert_eq!(round_to(reading.value, 3), 39.5);
        assert_eq!(sampler.next_due_ms(), 5010);

        sampler.configure(&[], 20).unwrap();
        let reading = sampler.sample_due(20, &mut sensors).unwrap()[0];
        assert_eq!(round_to(reading.value, 3), 21.0);
        assert_eq!(sampler.next_due_ms(), 1020);
    }

    #[test]
    fn an_unknown_channel_changes_nothing() {
        let mut sampler = Sampler::new(&[temperature(0)], 1000).unwrap();
        let config = [provisioned("t", 2.0, 0.0), provisioned("nope", 1.0, 0.0)];
        assert_eq!(sampler.configure(&config, 0), Err(UnknownChannel));
        let reading = sampler.sample_due(0, &mut Script(std::vec![20.0])).unwrap()[0];
        assert_eq!(round_to(reading.value, 3), 20.0);
    }

    #[test]
    fn channels_keep_their_own_intervals() {
        let setups = [temperature(0), temperature(0).with_interval_ms(3000)];
        let mut sampler = Sampler::new(&setups, 1000).unwrap();
        let mut sensors = Script(std::vec![1.0; 10]);
        let counts: std::vec::Vec<usize> = (0..4)
            .map(|i| sampler.sample_due(i * 1000, &mut sensors).map_or(0, |r| r.len()))
            .collect();
        assert_eq!(counts, [2, 1, 1, 2]);
        assert_eq!(sampler.next_due_ms(), 4000);
    }

    #[test]
    fn a_stall_skips_rounds_instead_of_bursting() {
        let mut sampler = Sampler::new(&[temperature(0)], 1000).unwrap();
        let mut sensors = Script(std::vec![1.0; 10]);
        assert!(sampler.sample_due(0, &mut sensors).is_some());
        assert!(sampler.sample_due(5_500, &mut sensors).is_some());
        assert!(sampler.sample_due(5_600, &mut sensors).is_none());
        assert_eq!(sampler.next_due_ms(), 6_500);
    }
}
