// Classifying one blood-cell capture on Android with an edgeblood LiteRT model (model.tflite).
//
//   dependencies { implementation("com.google.ai.edge.litert:litert:1.4.0")
//                  implementation("com.google.ai.edge.litert:litert-metadata:1.4.0") }  // FlatBuffers schema classes
//   put runs/<name>/export/model.tflite into app/src/main/assets/
//
// The contract (tests/test_examples.py checks every name and shape below against an exported file):
// signature "serving_default" takes "image" float32 [1, 3, S, S] (NCHW, RGB, 0-255: the normalisation
// is inside the model) and returns "probabilities" float32 [1, 8] and "label" int32 [1]. A second
// signature "batch64" takes 64 images at once. Class names, S and the framing are in the flatbuffer's
// metadata entry "edgeblood" (JSON), read below with the FlatBuffers classes of the LiteRT schema.
// Not compiled in CI (Linux, no Android SDK); examples/litert_app.py is the same calls in Python, run by the tests.

package org.edgeblood.example

import android.graphics.Bitmap
import org.json.JSONArray
import org.json.JSONObject
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.schema.Model
import java.nio.ByteBuffer
import java.nio.ByteOrder

class EdgebloodClassifier(modelBuffer: ByteBuffer, threads: Int = 2) {
    companion object {
        const val SIGNATURE = "serving_default"
        const val INPUT_NAME = "image"
        const val PROBABILITIES_OUTPUT = "probabilities"
        const val LABEL_OUTPUT = "label"
        const val DOMAIN_OUTPUT = "domain"  // [1, 2]: feature and image distance to the training data / threshold
        const val METADATA_ENTRY = "edgeblood"
        const val INPUT_LAYOUT = "NCHW"
        const val INPUT_BATCH = 1
        const val NUM_CLASSES = 8
    }

    private val interpreter = Interpreter(modelBuffer, Interpreter.Options().setNumThreads(threads))  // XNNPACK by default
    private val contract: JSONObject = readMetadata(modelBuffer)
    val classes: List<String> = JSONArray(contract.getString("classes")).let { a -> List(a.length()) { a.getString(it) } }
    val size: Int = contract.getString("input_size").toInt()
    private val framing = JSONObject(contract.getString("framing"))  // {"kind": "window", "window_px": 200, ...}

    /** [outside]: the image does not look like the training data (another lab, stain or microscope): do not trust [label]. */
    data class Result(val label: String, val probability: Float, val probabilities: FloatArray, val outside: Boolean)

    /** [capture]: a whole microscope frame (e.g. 360x363 px), framed the way the training images were. */
    fun classify(capture: Bitmap): Result {
        val cell = frame(capture)
        val input = ByteBuffer.allocateDirect(4 * 3 * size * size).order(ByteOrder.nativeOrder())
        val pixels = IntArray(size * size).also { cell.getPixels(it, 0, size, 0, 0, size, size) }
        for (channel in 0 until 3) {  // NCHW: all R, then all G, then all B; raw 0-255 values
            val shift = 16 - 8 * channel
            for (p in pixels) input.putFloat(((p shr shift) and 0xFF).toFloat())
        }
        input.rewind()
        val probabilities = Array(INPUT_BATCH) { FloatArray(NUM_CLASSES) }
        val label = IntArray(INPUT_BATCH)
        val domain = Array(INPUT_BATCH) { FloatArray(2) }
        interpreter.runSignature(mapOf(INPUT_NAME to input),
            mapOf(PROBABILITIES_OUTPUT to probabilities, LABEL_OUTPUT to label, DOMAIN_OUTPUT to domain), SIGNATURE)
        return Result(classes[label[0]], probabilities[0][label[0]], probabilities[0], domain[0].any { it > 1f })
    }

    /** The model's framing: a centred window of window_px source pixels (BloodMNIST: 200 px), bilinear resize.
     *  (The official 28 px file also went through JPEG q75; skipping it costs little, see the README.) */
    private fun frame(capture: Bitmap): Bitmap {
        val short = minOf(capture.width, capture.height)
        val side = when (framing.getString("kind")) {
            "window" -> framing.getInt("window_px").also { require(it <= short) { "capture smaller than the $it px window" } }
            "fraction" -> Math.round(short * framing.getDouble("fraction")).toInt()
            else -> short
        }
        val left = Math.round((capture.width - side) / 2.0).toInt()
        val top = Math.round((capture.height - side) / 2.0).toInt()
        val window = Bitmap.createBitmap(capture, left, top, side, side)
        return Bitmap.createScaledBitmap(window, size, size, true)  // filter = true: bilinear
    }

    private fun readMetadata(buffer: ByteBuffer): JSONObject {
        val model = Model.getRootAsModel(buffer.duplicate().order(ByteOrder.LITTLE_ENDIAN))
        for (i in 0 until model.metadataLength()) {
            val entry = model.metadata(i)
            if (entry.name() != METADATA_ENTRY) continue
            val data = model.buffers(entry.buffer())
            val bytes = if (data.offset() > 1) {  // stored after the flatbuffer (quantized models)
                ByteArray(data.size().toInt()).also { buffer.duplicate().apply { position(data.offset().toInt()) }.get(it) }
            } else {
                ByteArray(data.dataLength()) { data.data(it).toByte() }
            }
            return JSONObject(String(bytes, Charsets.UTF_8))
        }
        error("model.tflite has no '$METADATA_ENTRY' metadata: export it with `edgeblood export RUN --target litert`")
    }
}
