// Sample: point it at an avatar and press Play. It finds the face mesh (the SkinnedMeshRenderer
// with the most blendshapes, unless one is set) and the head bone (the Animator's humanoid Head,
// unless one is set), adds a Blendshape Mapper for them and hands it to the Facetrack Subscriber
// on this object. The overlay shows what is connected and how many ARKit names found a blendshape.
using Facetrack;
using UnityEngine;

[AddComponentMenu("facetrack/Samples/Facetrack Avatar")]
[RequireComponent(typeof(FacetrackSubscriber))]
public sealed class FacetrackAvatar : MonoBehaviour
{
    [Tooltip("The avatar's root object (with its Animator for a humanoid)")]
    public GameObject avatar;
    [Tooltip("Face mesh (empty: the avatar's SkinnedMeshRenderer with the most blendshapes)")]
    public SkinnedMeshRenderer face;
    [Tooltip("Head bone (empty: the humanoid Head of the avatar's Animator)")]
    public Transform head;
    [Tooltip("Prefixes to strip from blendshape names, e.g. 'blendShape1.'")]
    public string[] prefixes = new string[0];
    [Tooltip("Also move the head with the subject's head")]
    public bool applyTranslation;

    FacetrackSubscriber _subscriber;
    BlendshapeMapper _mapper;
    string _status = "no avatar set: drag your avatar onto the Avatar field";

    void Awake()
    {
        _subscriber = GetComponent<FacetrackSubscriber>();
        if (avatar == null) return;
        if (face == null) face = MostBlendshapes(avatar);
        if (head == null)
        {
            var animator = avatar.GetComponentInChildren<Animator>();
            if (animator != null && animator.isHuman) head = animator.GetBoneTransform(HumanBodyBones.Head);
        }
        if (face == null)
        {
            _status = avatar.name + " has no SkinnedMeshRenderer with blendshapes";
            return;
        }
        _mapper = face.gameObject.AddComponent<BlendshapeMapper>();
        _mapper.target = face;
        _mapper.head = head;
        _mapper.avatarRoot = avatar.transform;
        _mapper.prefixes = prefixes;
        _mapper.applyTranslation = applyTranslation;
        _subscriber.mappers = new[] { _mapper };
    }

    static SkinnedMeshRenderer MostBlendshapes(GameObject root)
    {
        SkinnedMeshRenderer best = null;
        foreach (var renderer in root.GetComponentsInChildren<SkinnedMeshRenderer>())
        {
            int count = renderer.sharedMesh != null ? renderer.sharedMesh.blendShapeCount : 0;
            if (count > 0 && (best == null || count > best.sharedMesh.blendShapeCount)) best = renderer;
        }
        return best;
    }

    void Update()
    {
        if (_mapper == null) return;
        _status = string.Format("{0}: {1}/52 ARKit blendshapes matched on {2}, head bone {3}; {4} frames received{5}",
            _subscriber.endpoint, _mapper.MatchedCount, face.name, head != null ? head.name : "none",
            _subscriber.FramesReceived, _subscriber.Malformed > 0 ? ", " + _subscriber.Malformed + " malformed" : "");
    }

    void OnGUI()
    {
        GUI.Label(new Rect(10, 10, Screen.width - 20, 40), "facetrack: " + _status);
    }
}
