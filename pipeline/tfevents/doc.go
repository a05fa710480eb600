// Package tfevents writes (and reads back) TensorBoard event files: TFRecord
// framing with masked CRC-32C checksums around tensorflow.Event protocol
// buffers, whose Summary values carry scalars. `tensorboard --logdir DIR`
// shows every folder below DIR that holds such files as one run.
//
// It encodes the few Event fields it needs with protowire, so nothing of
// TensorFlow is linked. It knows nothing of TagPR and imports nothing of
// tagpr; pipeline uses it for the training stages' scalars.
//
// Each Writer is a new file (events.out.tfevents.TIME.HOST.PID.N), flushed
// record by record so a running job shows up as it goes. A job that resumes
// from a checkpoint calls Restart with its first step: the SessionLog START
// event it writes tells TensorBoard to drop what earlier files logged for
// that step and later ones (they are redone).
package tfevents
