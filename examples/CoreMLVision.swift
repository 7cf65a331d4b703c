// CoreMLVision.swift - classify blood-cell images in an iOS/macOS app with an edgeblood Core ML model.
//
// Add runs/<name>/export/model.mlpackage to the Xcode target (Xcode compiles it to .mlmodelc), then:
//
//     let classifier = try CellClassifier(modelURL: Bundle.main.url(forResource: "model", withExtension: "mlmodelc")!)
//     let result = try classifier.classify(cgImage)            // a whole capture: framed as in training, then scaled
//     print(result.label, result.probability, result.needsReview)
//     let checked = try classifier.classifyWithoutVision(cgImage)  // the same, plus the domain check
//     if checked.outside == true { /* unlike the training data: another lab, stain or scale; do not trust the label */ }
//
// The model's contract (written by `edgeblood export --target coreml`, checked against this file by
// tests/test_examples.py): one image input "image" (RGB, the model's size, pixels 0-255 - the
// normalisation is inside the model, so the app adds no scaling), outputs "classLabel" (String),
// "probabilities" ([String: Double] over the 8 cell types) and "domain" (2 numbers: how far the image's
// features and pixel statistics lie from the training data, each over its threshold; above 1 = unlike what
// the model was trained on, e.g. another lab's stain or microscope). Vision's classification observations
// do not carry "domain"; `classifyWithoutVision` reads it. Class names and input size are also in the
// model's creator-defined metadata ("classes" as a JSON list, "input_size").
//
// Framing: the model was trained on windows cut from captures, described by the "framing" metadata
// (JSON; BloodMNIST: a centred 200x200 px window of a 360x363 capture). The window becomes Vision's
// regionOfInterest, which Vision then scales to the input size (.scaleFill: the window is already
// square) - the recipe of `edgeblood predict`. Vision's resampling differs slightly from PIL's
// bilinear, and the JPEG q75 step of the official 28 px file is not applied here (models trained
// with edgeblood's default recipe hold on both; see the README's framing table). Pass
// `framing: .cellCrop` for images that are already single-cell crops.

import CoreGraphics
import CoreML
import Foundation
import Vision

/// Feature names fixed by `edgeblood export --target coreml`.
enum EdgebloodCoreML {
    static let inputName = "image"
    static let labelOutput = "classLabel"
    static let probabilitiesOutput = "probabilities"
    static let domainOutput = "domain"
    static let classesKey = "classes"
    static let inputSizeKey = "input_size"
    static let framingKey = "framing"
}

/// The "framing" metadata entry (edgeblood.framing): how a training image was cut from its capture.
struct Framing: Decodable {
    let kind: String          // "window" (fixed px), "fraction" (of the shorter side) or "square"
    let window_px: Int?
    let fraction: Double?
    let jpeg_quality: Int?    // not applied by this snippet (see the note above)

    static let cellCrop = Framing(kind: "square", window_px: nil, fraction: nil, jpeg_quality: nil)

    /// The square cut from a width x height capture, in Vision's normalised, bottom-left-origin coordinates.
    /// Offsets are rounded half to even, like edgeblood (Python's round).
    func regionOfInterest(width: Int, height: Int) -> CGRect {
        let short = min(width, height)
        var side = short
        if kind == "window", let px = window_px { side = min(px, short) }
        if kind == "fraction", let f = fraction { side = max(1, Int((Double(short) * f).rounded(.toNearestOrEven))) }
        let left = (Double(width - side) / 2).rounded(.toNearestOrEven)
        let top = (Double(height - side) / 2).rounded(.toNearestOrEven)
        return CGRect(x: left / Double(width), y: (Double(height) - top - Double(side)) / Double(height),
                      width: Double(side) / Double(width), height: Double(side) / Double(height))
    }
}

struct CellPrediction {
    let label: String
    let probability: Double
    let topK: [(label: String, probability: Double)]
    /// True when the top probability is below the review threshold: send this cell to a person.
    let needsReview: Bool
    /// The domain check: true when the image is unlike the training data (its label is not to be trusted), nil
    /// where it was not read (the Vision path, or a model exported without a domain profile).
    let outside: Bool?
}

enum CellClassifierError: Error {
    case noResult
}

final class CellClassifier {
    let model: MLModel
    let classes: [String]
    let inputSize: Int
    let framing: Framing
    let rejectBelow: Double
    private let visionModel: VNCoreMLModel

    /// `modelURL`: a compiled .mlmodelc (from the app bundle) or an .mlpackage (compiled here on first use).
    init(modelURL: URL, rejectBelow: Double = 0.7, computeUnits: MLComputeUnits = .all) throws {
        let compiledURL = modelURL.pathExtension == "mlmodelc" ? modelURL : try MLModel.compileModel(at: modelURL)
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits
        model = try MLModel(contentsOf: compiledURL, configuration: configuration)
        visionModel = try VNCoreMLModel(for: model)
        self.rejectBelow = rejectBelow

        let metadata = model.modelDescription.metadata[.creatorDefinedKey] as? [String: String] ?? [:]
        if let json = metadata[EdgebloodCoreML.classesKey]?.data(using: .utf8),
           let names = try? JSONDecoder().decode([String].self, from: json) {
            classes = names
        } else {
            classes = model.modelDescription.classLabels as? [String] ?? []
        }
        inputSize = Int(metadata[EdgebloodCoreML.inputSizeKey] ?? "") ?? 0
        framing = metadata[EdgebloodCoreML.framingKey]?.data(using: .utf8)
            .flatMap { try? JSONDecoder().decode(Framing.self, from: $0) } ?? .cellCrop
    }

    /// Vision + Core ML: a capture of any size, framed as the training images were, then scaled to the input.
    func classify(_ image: CGImage, orientation: CGImagePropertyOrientation = .up, topK: Int = 3,
                  framing override: Framing? = nil) throws -> CellPrediction {
        let request = VNCoreMLRequest(model: visionModel)
        request.regionOfInterest = (override ?? framing).regionOfInterest(width: image.width, height: image.height)
        request.imageCropAndScaleOption = .scaleFill
        let handler = VNImageRequestHandler(cgImage: image, orientation: orientation, options: [:])
        try handler.perform([request])
        // A classifier model yields VNClassificationObservation results, most confident first.
        guard let observations = request.results as? [VNClassificationObservation], let best = observations.first else {
            throw CellClassifierError.noResult
        }
        let top = observations.prefix(topK).map { (label: $0.identifier, probability: Double($0.confidence)) }
        return CellPrediction(label: best.identifier, probability: Double(best.confidence), topK: Array(top),
                              needsReview: Double(best.confidence) < rejectBelow, outside: nil)
    }

    /// Core ML alone (no Vision): the same window cut with CGImage.cropping, scaled through MLFeatureValue.
    func classifyWithoutVision(_ image: CGImage, topK: Int = 3) throws -> CellPrediction {
        guard let constraint = model.modelDescription.inputDescriptionsByName[EdgebloodCoreML.inputName]?.imageConstraint else {
            throw CellClassifierError.noResult
        }
        let roi = framing.regionOfInterest(width: image.width, height: image.height)
        let window = CGRect(x: roi.minX * Double(image.width), y: (1 - roi.maxY) * Double(image.height),  // top-left origin
                            width: roi.width * Double(image.width), height: roi.height * Double(image.height)).integral
        guard let framed = image.cropping(to: window) else { throw CellClassifierError.noResult }
        let pixels = try MLFeatureValue(cgImage: framed, constraint: constraint,
                                        options: [.cropAndScale: VNImageCropAndScaleOption.scaleFill.rawValue])
        let input = try MLDictionaryFeatureProvider(dictionary: [EdgebloodCoreML.inputName: pixels])
        let output = try model.prediction(from: input)
        guard let label = output.featureValue(for: EdgebloodCoreML.labelOutput)?.stringValue,
              let dictionary = output.featureValue(for: EdgebloodCoreML.probabilitiesOutput)?.dictionaryValue else {
            throw CellClassifierError.noResult
        }
        let ranked = dictionary
            .compactMap { key, value in (key.base as? String).map { (label: $0, probability: value.doubleValue) } }
            .sorted { $0.probability > $1.probability }
        let probability = ranked.first?.probability ?? 0
        // [features, image] distances over their thresholds: either above 1 = outside what training saw
        let domain: MLMultiArray? = output.featureValue(for: EdgebloodCoreML.domainOutput)?.multiArrayValue
        let outside = domain.map { scores in (0..<scores.count).contains { scores[$0].doubleValue > 1 } }
        return CellPrediction(label: label, probability: probability, topK: Array(ranked.prefix(topK)),
                              needsReview: probability < rejectBelow || outside == true, outside: outside)
    }
}
