"""The outbox relay: publishes committed OutboxEvent rows to Kafka, in order, without losing any.

Guarantees, and why they hold:

* Nothing is lost. A row is marked sent only after Kafka acknowledged it (acks=all, delivery
  report without error). A crash anywhere leaves unacknowledged rows unsent, and the next
  relay publishes them again.
* Duplicates are harmless. A re-sent row carries the same ``event_id`` (in the payload and the
  ``event_id`` header); consumers record processed event ids and skip repeats. Within one run,
  the idempotent producer also removes duplicates its own retries would create.
* Order per task. Rows of one task are committed in ``id`` order: every service locks the
  task row (SELECT ... FOR UPDATE) before it writes its outbox rows, so a later change of the
  same task gets larger ids and commits after the earlier one. The relay reads *all* unsent
  rows in ``id`` order (not "ids after the last one seen", which would skip a row whose
  transaction committed late), and produces them in that order with key = task id, so they
  land on one partition; the idempotent producer (max 5 in flight, sequence numbers) keeps
  that order through retries.
* Pipelined rounds. A round does not wait for the previous one's acknowledgements: it reads
  the next ready rows in id order *leaving out the window* (rows produced and not yet marked),
  and produces them behind the window on the same producer (when the window has no room for
  them, it waits for Kafka's answers after the read, not before, and reads again unless they
  were all acknowledgements). A row of a task is read only once
  every earlier row of that task is committed (see above), so it is either in the window (then
  produced before it) or read with it, in order; a row whose transaction committed late is in
  no window and is read by the next round. Acknowledged rows go to a ``SentMarker`` thread,
  which marks them sent with one UPDATE for all the acknowledgements handed to it since its
  last, while the next rounds are read and published; they stay in the window until that UPDATE
  committed. Rounds start
  at ``SMALLEST_BATCH`` rows and double while every read fills its batch, up to
  ``batch_size``; at most twice ``batch_size`` rows are in flight, and twice as many wait for the
  marker.
* One relay at a time. Two relays producing the same rows concurrently could interleave
  them. A PostgreSQL session advisory lock elects a leader; other relays wait as hot standbys
  and retry the lock every second. The lock belongs to the leader's session, so PostgreSQL
  releases it the moment the leader's process or connection dies and a standby takes over,
  re-sending at most the leader's unacknowledged rows (duplicates, see above).
* Kafka down. The publisher waits for the broker instead of failing messages (infinite
  ``message.timeout.ms``, see events.transports.kafka.producer), logging once, and resumes on its
  own. Other transient errors (timeouts, leader elections, a missing topic) are retried with
  backoff: the fault is Kafka's, not the message's, and waiting is right.
* One refused message blocks nobody else. An answer that refuses *this* message for good
  (too large, invalid, not authorised, ...: the transport says which) parks its row (``parked_at``,
  ``park_reason``; counted in ``outbox_events_parked_total``): the relay never retries it on
  its own, and only the later rows of the same key wait behind it (``OutboxEvent.objects.
  ready()`` leaves them out), so per-task order holds while every other task flows.
  ``retry_parked`` (events.outbox, or the admin action) un-parks rows once the cause is
  fixed; a retried row gets a fresh producer, which reads the topics' limits again.

  A refusal at ``produce()`` is known at once: the row is parked before the next round is
  read, so ``ready()`` already leaves its key's later rows out of it. How a refusal by the
  broker (rather than at ``produce()``) is kept from reordering a key is the Kafka publisher's
  part: "Order within the window" in events.transports.kafka.producer. Any other failure
  drains the window (every answer in) and pauses before the failed rows are read again, as a
  lockstep round would.
* With EVENT_TRANSPORT=dapr the same loop publishes through the Dapr sidecar instead
  (events.transports.dapr.DaprPublisher): same rows, same order, same wire format. A sidecar
  outage parks nothing and waits; an answer refusing the message parks it (PublishFailure).
  The sidecar answers each row before the next is sent, so nothing is ever in flight and the
  rounds stay in lockstep (only the marking runs beside them).

The loop knows no client library: a publisher (``make_publisher``, one per transport) takes
rounds of rows and answers per row, at once or later (events.core.publishing).

The relay wakes on PostgreSQL NOTIFY (sent at commit by a trigger on the outbox table) and
polls every ``poll_interval`` seconds as a fallback for lost notifications. A read that finds
fewer rows than it asked for has caught up with every row committed before it, and every later
commit NOTIFYs: so once caught up the relay reads again only after a NOTIFY (or the polling
interval), never just to find nothing, and a change costs it one read, not three (at 50 changes/s
the empty reads and the parked-rows count were most of its CPU).

The relay's steps, one module each (imports run down this list):

* ``loop`` (``OutboxRelay``, ``relay_outbox``'s loop): leadership, then rounds of read, publish, record.
* ``window``: the rows published and not answered yet, Kafka's answers recorded (acknowledged rows to
  the marker, refused rows parked, failures paused for).
* ``leadership``: the leader lock and the NOTIFY wait on its connection.
* ``reading``: the next ready rows in id order, leaving out the window; the round's adaptive size.
* ``marking``: the sent-marker thread (one UPDATE for the acknowledgements handed to it since its last).
* ``statements``: statements compiled once, their placeholder ids replaced per call.
* ``metrics``: the relay's Prometheus metrics.
"""
